// LINE protocol: the splitter's slow path (lines that span feeds), parse_line and the line formatters;
// see core/line_protocol.hpp.
#include "core/line_protocol.hpp"

#include <cassert>
#include <limits>
#include <optional>

namespace ringhub {

namespace {

// A partial-line buffer larger than this is freed once its line is done, so a connection that sent
// one long line split across reads does not keep up to 64 KiB for the rest of its life; 4 KiB covers
// the short lines people type without reallocating.
constexpr std::size_t kRetainedPartialCapacity = std::size_t{4} * 1024;

// X if `line` is `prefix` followed by a non-empty X that does not end in "\r". Such an X could never be
// answered: the line that carries it on, and the ok's line, each lose one "\r" before their "\n".
std::optional<std::string_view> strip_verb(std::string_view line, std::string_view prefix) {
  if (line.size() <= prefix.size() || !line.starts_with(prefix) || line.back() == '\r') {
    return std::nullopt;
  }
  return line.substr(prefix.size());
}

void append_line(std::string& out, std::string_view prefix, std::string_view x) {
  out.reserve(out.size() + prefix.size() + x.size() + 1);
  out.append(prefix);
  out.append(x);
  out.push_back('\n');
}

}  // namespace

LineSplitter::LineSplitter(std::size_t max_line) : max_line_(max_line), max_raw_(max_line + 1) {
  assert(max_line < std::numeric_limits<std::size_t>::max() / 2);
}

void LineSplitter::gather(const std::uint8_t* p, std::size_t n) {
  partial_.append(reinterpret_cast<const char*>(p), n);
  copied_bytes_ += n;
}

bool LineSplitter::partial_may_fit() const {
  // max_raw_ bytes and no newline yet: only a "\r" as the last of them can still end a line that fits.
  return partial_.size() < max_raw_ || (partial_.size() == max_raw_ && partial_.back() == '\r');
}

bool LineSplitter::fits(std::string_view raw) const {
  return raw.size() <= max_line_ || (raw.size() == max_raw_ && raw.back() == '\r');
}

LineStatus LineSplitter::fail() {
  too_long_ = true;
  std::string().swap(partial_);
  return LineStatus::kTooLong;
}

void LineSplitter::release_partial() {
  if (partial_.capacity() > kRetainedPartialCapacity) {
    std::string().swap(partial_);
  } else {
    partial_.clear();
  }
}

LineCommand parse_line(std::string_view line) {
  if (const auto x = strip_verb(line, kMessagePrefix)) {
    return {LineCommand::Verb::kMessage, *x};
  }
  if (const auto x = strip_verb(line, kOkPrefix)) {
    return {LineCommand::Verb::kOk, *x};
  }
  return {};
}

void append_message_line(std::string& out, std::string_view x) {
  append_line(out, kMessagePrefix, x);
}

void append_ok_line(std::string& out, std::string_view x) {
  append_line(out, kOkPrefix, x);
}

}  // namespace ringhub
