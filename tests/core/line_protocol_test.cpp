// Tests for core/line_protocol: LineSplitter on LF and CRLF, empty lines, lines split at every byte or fed
// byte by byte, the line limit (exactly max_line accepted, one more rejected, before the newline comes),
// zero copy for whole lines versus counted copies for spanning ones, stopping; parse_line and formatters.
#include "core/line_protocol.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringhub {
namespace {

using Verb = LineCommand::Verb;
using namespace std::string_literals;

std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// What a run of feeds produced: the lines and the status of the last feed.
struct Split {
  std::vector<std::string> lines;
  LineStatus status = LineStatus::kOk;
};

// Feeds `chunks` in order, stopping at the first status other than kOk.
Split split(LineSplitter& splitter, const std::vector<std::string>& chunks) {
  Split out;
  for (const std::string& chunk : chunks) {
    out.status = splitter.feed(as_bytes(chunk), [&](std::string_view line) {
      out.lines.emplace_back(line);
      return true;
    });
    if (out.status != LineStatus::kOk) {
      break;
    }
  }
  return out;
}

Split split(std::size_t max_line, const std::vector<std::string>& chunks) {
  LineSplitter splitter(max_line);
  return split(splitter, chunks);
}

std::vector<std::string> one_byte_chunks(std::string_view text) {
  std::vector<std::string> chunks;
  for (char c : text) {
    chunks.emplace_back(1, c);
  }
  return chunks;
}

// ---- LineSplitter: line ends ----

TEST(LineSplitterTest, StripsLfAndOneCrBeforeIt) {
  const Split out = split(100, {"message a\nok b\r\nc\r\r\nd\re\n"});
  EXPECT_EQ(out.status, LineStatus::kOk);
  EXPECT_EQ(out.lines, (std::vector<std::string>{"message a", "ok b", "c\r", "d\re"}));
}

TEST(LineSplitterTest, EmptyLinesAreLines) {
  const Split out = split(100, {"\n\r\n\nx\n"});
  EXPECT_EQ(out.lines, (std::vector<std::string>{"", "", "", "x"}));
  EXPECT_EQ(parse_line(out.lines[0]).verb, Verb::kUnknown);
}

TEST(LineSplitterTest, HoldsAPartialLineUntilItsNewline) {
  LineSplitter splitter(100);
  EXPECT_TRUE(splitter.empty());
  Split out = split(splitter, {"ok a\nmess"});
  EXPECT_EQ(out.lines, (std::vector<std::string>{"ok a"}));
  EXPECT_FALSE(splitter.empty());
  EXPECT_EQ(splitter.buffered(), 4U);

  out = split(splitter, {"age x\r"});
  EXPECT_TRUE(out.lines.empty());
  EXPECT_EQ(splitter.buffered(), 10U);

  out = split(splitter, {"\n"});
  EXPECT_EQ(out.lines, (std::vector<std::string>{"message x"}));
  EXPECT_TRUE(splitter.empty());
  EXPECT_EQ(splitter.buffered(), 0U);
}

TEST(LineSplitterTest, EmptyFeedDoesNothing) {
  LineSplitter splitter(100);
  const Split out = split(splitter, {""});
  EXPECT_EQ(out.status, LineStatus::kOk);
  EXPECT_TRUE(out.lines.empty());
  EXPECT_TRUE(splitter.empty());
}

TEST(LineSplitterTest, ManyLinesInOneFeedAreAllInPlace) {
  std::string text;
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    expected.push_back("message " + std::to_string(i));
    text += expected.back() + (i % 2 == 0 ? "\n" : "\r\n");
  }
  LineSplitter splitter(100);
  const Split out = split(splitter, {text});
  EXPECT_EQ(out.status, LineStatus::kOk);
  EXPECT_EQ(out.lines, expected);
  EXPECT_EQ(splitter.copied_bytes(), 0U);
  EXPECT_TRUE(splitter.empty());
}

// ---- LineSplitter: lines across feeds ----

TEST(LineSplitterTest, LineSplitAtEveryPosition) {
  const std::string bytes = "message hello world\r\nok x\n\nmessage \xff\x00 z\n"s;
  const std::vector<std::string> expected = {"message hello world", "ok x", "", "message \xff\x00 z"s};
  ASSERT_EQ(split(100, {bytes}).lines, expected);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    LineSplitter splitter(100);
    const Split out = split(splitter, {bytes.substr(0, cut), bytes.substr(cut)});
    EXPECT_EQ(out.status, LineStatus::kOk) << cut;
    EXPECT_EQ(out.lines, expected) << cut;
    EXPECT_TRUE(splitter.empty()) << cut;
  }
}

TEST(LineSplitterTest, LineSplitAtEveryPairOfPositions) {
  const std::string text = "ok a b\r\nmessage cd\n";
  const std::vector<std::string> expected = {"ok a b", "message cd"};
  for (std::size_t a = 0; a <= text.size(); ++a) {
    for (std::size_t b = a; b <= text.size(); ++b) {
      const Split out = split(100, {text.substr(0, a), text.substr(a, b - a), text.substr(b)});
      EXPECT_EQ(out.lines, expected) << a << " " << b;
    }
  }
}

TEST(LineSplitterTest, OneByteAtATime) {
  const std::string text = "message one\r\n\nok two\n\r\nx\r\r\n";
  LineSplitter splitter(100);
  const Split out = split(splitter, one_byte_chunks(text));
  EXPECT_EQ(out.status, LineStatus::kOk);
  EXPECT_EQ(out.lines, (std::vector<std::string>{"message one", "", "ok two", "", "x\r"}));
  EXPECT_TRUE(splitter.empty());
  // Every byte but the newlines was gathered into the partial line.
  EXPECT_EQ(splitter.copied_bytes(), text.size() - 5);
}

// ---- LineSplitter: zero copy ----

TEST(LineSplitterTest, WholeLinesAreViewsIntoTheFedBytes) {
  const std::string first = "ok a\r\nmessage b\nmess";
  const std::string second = "age c\nok d\n";
  LineSplitter splitter(100);
  std::vector<const char*> starts;
  std::vector<std::string> lines;
  auto on_line = [&](std::string_view line) {
    starts.push_back(line.data());
    lines.emplace_back(line);
    return true;
  };
  ASSERT_EQ(splitter.feed(as_bytes(first), on_line), LineStatus::kOk);
  ASSERT_EQ(splitter.feed(as_bytes(second), on_line), LineStatus::kOk);
  ASSERT_EQ(lines, (std::vector<std::string>{"ok a", "message b", "message c", "ok d"}));
  EXPECT_EQ(starts[0], first.data());
  EXPECT_EQ(starts[1], first.data() + 6);
  // The spanning line was gathered: its view is in neither buffer.
  EXPECT_FALSE(starts[2] >= first.data() && starts[2] < first.data() + first.size());
  EXPECT_FALSE(starts[2] >= second.data() && starts[2] < second.data() + second.size());
  EXPECT_EQ(starts[3], second.data() + 6);
  EXPECT_EQ(splitter.copied_bytes(), std::string_view("message c").size());
}

// ---- LineSplitter: the line limit ----

TEST(LineSplitterTest, ExactlyMaxLineIsAccepted) {
  const std::string eight(8, 'a');
  for (const std::string& text : {eight + "\n", eight + "\r\n"}) {
    EXPECT_EQ(split(8, {text}).lines, (std::vector<std::string>{eight})) << text;
    EXPECT_EQ(split(8, one_byte_chunks(text)).lines, (std::vector<std::string>{eight})) << text;
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
      const Split out = split(8, {text.substr(0, cut), text.substr(cut)});
      EXPECT_EQ(out.status, LineStatus::kOk) << cut;
      EXPECT_EQ(out.lines, (std::vector<std::string>{eight})) << cut;
    }
  }
}

TEST(LineSplitterTest, OneByteMoreIsRejected) {
  const std::string nine(9, 'a');
  for (const std::string& text : {nine + "\n", nine + "\r\n", "aaaaaaaa\r\r\n"s}) {
    EXPECT_EQ(split(8, {text}).status, LineStatus::kTooLong) << text;
    EXPECT_EQ(split(8, one_byte_chunks(text)).status, LineStatus::kTooLong) << text;
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
      const Split out = split(8, {text.substr(0, cut), text.substr(cut)});
      EXPECT_EQ(out.status, LineStatus::kTooLong) << cut;
      EXPECT_TRUE(out.lines.empty()) << cut;
    }
  }
}

TEST(LineSplitterTest, TooLongIsReportedBeforeTheNewlineArrives) {
  // max_line + 1 bytes that cannot be content plus "\r": certain at once.
  EXPECT_EQ(split(8, {"aaaaaaaaa"}).status, LineStatus::kTooLong);
  EXPECT_EQ(split(8, {"aaaa", "aaaaa"}).status, LineStatus::kTooLong);
  EXPECT_EQ(split(8, one_byte_chunks("aaaaaaaaa")).status, LineStatus::kTooLong);
  // max_line bytes and a "\r": the next byte decides.
  LineSplitter splitter(8);
  EXPECT_EQ(split(splitter, {"aaaaaaaa\r"}).status, LineStatus::kOk);
  EXPECT_EQ(splitter.buffered(), 9U);
  EXPECT_EQ(split(splitter, {"x"}).status, LineStatus::kTooLong);
}

TEST(LineSplitterTest, NeverHoldsMoreThanMaxLinePlusOne) {
  LineSplitter splitter(1000);
  const std::string flood(1 << 20, 'a');
  bool called = false;
  EXPECT_EQ(splitter.feed(as_bytes(flood),
                          [&](std::string_view) {
                            called = true;
                            return true;
                          }),
            LineStatus::kTooLong);
  EXPECT_FALSE(called);
  EXPECT_EQ(splitter.copied_bytes(), 0U);  // a line known too long in one feed is never copied

  LineSplitter drip(1000);
  std::size_t most = 0;
  LineStatus status = LineStatus::kOk;
  for (std::size_t i = 0; i < 2000 && status == LineStatus::kOk; ++i) {
    status = drip.feed(as_bytes(std::string_view(flood).substr(0, 7)), [](std::string_view) { return true; });
    most = std::max(most, drip.buffered());
  }
  EXPECT_EQ(status, LineStatus::kTooLong);
  EXPECT_LE(most, 1001U);
  EXPECT_EQ(drip.buffered(), 0U);  // the partial line is freed on failure
}

TEST(LineSplitterTest, LinesBeforeTheTooLongOneAreDelivered) {
  const Split out = split(10, {"ok a\nmessage b\n", "aaaaaaaaaaaaa\nok c\n"});
  EXPECT_EQ(out.status, LineStatus::kTooLong);
  EXPECT_EQ(out.lines, (std::vector<std::string>{"ok a", "message b"}));
}

TEST(LineSplitterTest, TooLongIsFinal) {
  LineSplitter splitter(8);
  EXPECT_EQ(split(splitter, {"aaaaaaaaaaaa\n"}).status, LineStatus::kTooLong);
  const Split out = split(splitter, {"ok a\n"});
  EXPECT_EQ(out.status, LineStatus::kTooLong);
  EXPECT_TRUE(out.lines.empty());
}

TEST(LineSplitterTest, DefaultLimitIs64KiB) {
  EXPECT_EQ(kDefaultMaxLineBytes, 65536U);
  const std::string longest(kDefaultMaxLineBytes, 'x');
  EXPECT_EQ(split(kDefaultMaxLineBytes, {longest + "\r\n"}).lines.size(), 1U);
  EXPECT_EQ(split(kDefaultMaxLineBytes, {longest.substr(0, 40000), longest.substr(40000) + "\n"}).lines,
            (std::vector<std::string>{longest}));
  EXPECT_EQ(split(kDefaultMaxLineBytes, {longest + "x\n"}).status, LineStatus::kTooLong);
}

TEST(LineSplitterTest, ZeroMaxLineAcceptsOnlyEmptyLines) {
  EXPECT_EQ(split(0, {"\n\r\n"}).lines, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(split(0, {"a\n"}).status, LineStatus::kTooLong);
}

// ---- LineSplitter: stopping ----

TEST(LineSplitterTest, FalseFromOnLineStops) {
  LineSplitter splitter(100);
  std::vector<std::string> lines;
  const LineStatus status = splitter.feed(as_bytes("ok a\nok b\nok c\n"), [&](std::string_view line) {
    lines.emplace_back(line);
    return lines.size() < 2;
  });
  EXPECT_EQ(status, LineStatus::kStopped);
  EXPECT_EQ(lines, (std::vector<std::string>{"ok a", "ok b"}));
}

TEST(LineSplitterTest, StoppingOnAGatheredLineReleasesIt) {
  LineSplitter splitter(100);
  ASSERT_EQ(split(splitter, {"ok "}).status, LineStatus::kOk);
  const LineStatus status = splitter.feed(as_bytes("a\nok b\n"), [](std::string_view) { return false; });
  EXPECT_EQ(status, LineStatus::kStopped);
  EXPECT_TRUE(splitter.empty());
}

// ---- parse_line ----

TEST(ParseLineTest, MessageAndOk) {
  LineCommand command = parse_line("message hello");
  EXPECT_EQ(command.verb, Verb::kMessage);
  EXPECT_EQ(command.payload, "hello");
  command = parse_line("ok hello");
  EXPECT_EQ(command.verb, Verb::kOk);
  EXPECT_EQ(command.payload, "hello");
  command = parse_line("ok x");
  EXPECT_EQ(command.verb, Verb::kOk);
  EXPECT_EQ(command.payload, "x");
}

TEST(ParseLineTest, PayloadIsAViewIntoTheLine) {
  const std::string line = "message abc";
  const LineCommand command = parse_line(line);
  EXPECT_EQ(command.payload.data(), line.data() + 8);
  EXPECT_EQ(command.payload.size(), 3U);
}

TEST(ParseLineTest, PayloadKeepsSpacesAndAnyByte) {
  EXPECT_EQ(parse_line("message  a b \t").payload, " a b \t");
  EXPECT_EQ(parse_line("ok  ").payload, " ");
  const std::string binary("message \x00\xff\r\x01 z", 14);
  const LineCommand command = parse_line(binary);
  EXPECT_EQ(command.verb, Verb::kMessage);
  EXPECT_EQ(command.payload, std::string_view(binary).substr(8));
  EXPECT_EQ(command.payload.size(), 6U);
}

TEST(ParseLineTest, EverythingElseIsUnknown) {
  for (const std::string_view line :
       {"", " ", "message", "message ", "ok", "ok ", "messagex", "messagex y", "okx", "okay x", "Message x",
        "OK x", " message x", "message\tx", "ok\tx", "error unknown command", "mess x", "o x",
        // X ending in "\r" (its line was "message x\r\r\n"): forwarded, it would lose that "\r"
        "message x\r", "ok x\r", "message \r", "message a\rb\r"}) {
    const LineCommand command = parse_line(line);
    EXPECT_EQ(command.verb, Verb::kUnknown) << "'" << line << "'";
    EXPECT_TRUE(command.payload.empty()) << "'" << line << "'";
  }
}

// ---- formatting ----

TEST(LineFormatTest, RepliesAreExact) {
  EXPECT_EQ(kUnknownCommandLine, "error unknown command\n");
  EXPECT_EQ(kLineTooLongLine, "error line too long\n");
}

TEST(LineFormatTest, AppendsLines) {
  std::string out = "x";
  append_message_line(out, "a b");
  append_ok_line(out, "c");
  EXPECT_EQ(out, "xmessage a b\nok c\n");
}

TEST(LineFormatTest, FormattedLinesParseBack) {
  const std::string payload("\x00 \xfe\r z", 6);
  std::string out;
  append_message_line(out, payload);
  append_ok_line(out, payload);
  const Split lines = split(100, {out});
  ASSERT_EQ(lines.lines.size(), 2U);
  EXPECT_EQ(parse_line(lines.lines[0]).verb, Verb::kMessage);
  EXPECT_EQ(parse_line(lines.lines[0]).payload, payload);
  EXPECT_EQ(parse_line(lines.lines[1]).verb, Verb::kOk);
  EXPECT_EQ(parse_line(lines.lines[1]).payload, payload);
}

}  // namespace
}  // namespace ringhub
