// Fuzz target for core/line_protocol: a line connection's byte stream fed whole and cut at fuzzer-chosen
// points must give the same lines and the same end (kOk or kTooLong); every line is the stream's bytes
// up to a "\n" minus one "\r", within the line cap; kTooLong only for a line certain to pass the cap;
// parse_line follows docs/protocol.md; message/ok lines round-trip through the splitter and parser.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/line_protocol.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace ringhub::fuzz {
namespace {

// The line cap for each mode (FuzzInput::mode): tiny caps so inputs reach the limit, and the default.
constexpr std::size_t kMaxLineByMode[16] = {0, 1,  2,  3,  4,   5,   7,    8,
                                            9, 16, 31, 64, 100, 255, 1024, kDefaultMaxLineBytes};

struct Outcome {
  std::vector<std::string> lines;
  LineStatus status = LineStatus::kOk;
  std::size_t buffered = 0;
};

bool record(Outcome& out, std::size_t max_line, std::string_view line) {
  require(line.size() <= max_line, "a line is within the cap");
  require(line.find('\n') == std::string_view::npos, "a line holds no newline");
  out.lines.emplace_back(line);
  return true;
}

Outcome feed_whole(std::span<const std::uint8_t> stream, std::size_t max_line) {
  LineSplitter splitter(max_line);
  Outcome out;
  out.status = splitter.feed(stream, [&](std::string_view line) { return record(out, max_line, line); });
  out.buffered = splitter.buffered();
  return out;
}

Outcome feed_split(const FuzzInput& input, std::size_t max_line) {
  LineSplitter splitter(max_line);
  Outcome out;
  for (const std::vector<std::uint8_t>& piece : split_pieces(input)) {
    const std::size_t lines_before = out.lines.size();
    const LineStatus status =
        splitter.feed(piece, [&](std::string_view line) { return record(out, max_line, line); });
    require(status != LineStatus::kStopped, "on_line never stops, so neither does feed");
    if (out.status == LineStatus::kTooLong) {
      require(status == LineStatus::kTooLong && out.lines.size() == lines_before, "kTooLong is final");
    }
    out.status = status;
    require(splitter.buffered() <= max_line + 1, "the partial line is at most the cap plus a \\r");
  }
  out.buffered = splitter.buffered();
  return out;
}

// Lines are the stream's bytes in order; what is left is a line that may still fit (kOk, all of it
// buffered) or one certain to be too long (kTooLong).
void check_against_stream(const Outcome& out, std::span<const std::uint8_t> bytes, std::size_t max_line) {
  const std::string_view stream(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::size_t pos = 0;
  for (const std::string& line : out.lines) {
    require(stream.substr(pos, line.size()) == line, "lines are the stream's bytes");
    pos += line.size();
    if (stream.substr(pos, 2) == "\r\n") {
      pos += 2;
    } else {
      require(stream.substr(pos, 1) == "\n", "a line ends at a newline (after one stripped \\r)");
      pos += 1;
    }
  }
  const std::string_view rest = stream.substr(pos);
  const std::size_t newline = rest.find('\n');
  if (out.status == LineStatus::kOk) {
    require(newline == std::string_view::npos, "kOk leaves no complete line undelivered");
    require(out.buffered == rest.size(), "kOk holds exactly the unfinished line");
    require(rest.size() <= max_line || (rest.size() == max_line + 1 && rest.back() == '\r'),
            "held line may fit");
    return;
  }
  require(out.status == LineStatus::kTooLong, "feed ends kOk or kTooLong");
  require(out.buffered == 0, "kTooLong frees the partial line");
  if (newline != std::string_view::npos) {
    std::string_view line = rest.substr(0, newline);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    require(line.size() > max_line, "kTooLong names a line over the cap");
  } else {
    require(rest.size() > max_line + 1 || (rest.size() == max_line + 1 && rest.back() != '\r'),
            "kTooLong only once the unfinished line cannot fit");
  }
}

void check_parse(std::string_view line) {
  const LineCommand command = parse_line(line);
  if (!line.empty() && line.back() == '\r') {  // an X ending in "\r" could never be answered
    require(command.verb == LineCommand::Verb::kUnknown && command.payload.empty(),
            "a line ending in \\r is unknown");
  } else if (line.size() > kMessagePrefix.size() && line.starts_with(kMessagePrefix)) {
    require(command.verb == LineCommand::Verb::kMessage, "\"message X\" parses as message");
    require(command.payload == line.substr(kMessagePrefix.size()), "message payload is X");
  } else if (line.size() > kOkPrefix.size() && line.starts_with(kOkPrefix)) {
    require(command.verb == LineCommand::Verb::kOk, "\"ok X\" parses as ok");
    require(command.payload == line.substr(kOkPrefix.size()), "ok payload is X");
  } else {
    require(command.verb == LineCommand::Verb::kUnknown && command.payload.empty(),
            "anything else is unknown");
  }
}

// X (no newline, not empty) formatted by append_*_line, split and parsed again, is X; a trailing "\r"
// of X is the one the splitter strips (docs/protocol.md: one "\r" before "\n" is not content), and an X
// that still ends in "\r" after that is refused as unknown.
void check_round_trip(std::string_view x) {
  if (x.empty() || x.find('\n') != std::string_view::npos) {
    return;
  }
  std::string text;
  append_message_line(text, x);
  append_ok_line(text, x);
  LineSplitter splitter(text.size());
  std::vector<LineCommand> commands;
  std::vector<std::string> lines;
  const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
  const LineStatus status = splitter.feed(std::span(p, text.size()), [&](std::string_view line) {
    lines.emplace_back(line);
    return true;
  });
  require(status == LineStatus::kOk && lines.size() == 2 && splitter.empty(), "two formatted lines split");
  std::string_view want = x;
  if (want.back() == '\r') {
    want.remove_suffix(1);
  }
  const LineCommand message = parse_line(lines[0]);
  const LineCommand ok = parse_line(lines[1]);
  if (want.empty() || want.back() == '\r') {  // X=\r, or X ending in \r\r: unknown (docs/protocol.md)
    require(message.verb == LineCommand::Verb::kUnknown && ok.verb == LineCommand::Verb::kUnknown,
            "X ending in \\r is unknown");
    return;
  }
  require(message.verb == LineCommand::Verb::kMessage && message.payload == want, "message X round-trips");
  require(ok.verb == LineCommand::Verb::kOk && ok.payload == want, "ok X round-trips");
}

// Every invariant of this target on one input.
void check_lines(const FuzzInput& input) {
  const std::size_t max_line = kMaxLineByMode[input.mode];
  const Outcome whole = feed_whole(input.stream, max_line);
  const Outcome split = feed_split(input, max_line);
  check_against_stream(whole, input.stream, max_line);
  check_against_stream(split, input.stream, max_line);
  require(whole.lines == split.lines, "split feeding gives the lines of whole feeding");
  require(whole.status == split.status, "split feeding ends as whole feeding");
  for (const std::string& line : whole.lines) {
    check_parse(line);
    check_round_trip(line);
  }
}

}  // namespace
}  // namespace ringhub::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ringhub::fuzz::check_input(data, size, ringhub::fuzz::check_lines);
}
