// The LINE protocol: text lines over TCP that a person can drive with nc. This header is the one place
// for its wire facts (verbs, the hub's reply lines, the line limit), the LineSplitter that cuts one
// connection's byte stream into lines (in place when a line lies whole in the received bytes), and
// parse_line.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace ringhub {

// Longest line content the hub accepts by default, "\r\n" not counted. It bounds the bytes one
// connection can make the hub hold while it waits for a newline; the hub's config can change it.
inline constexpr std::size_t kDefaultMaxLineBytes = std::size_t{64} * 1024;

// Lines the hub writes itself. After kLineTooLongLine it closes the connection; after
// kUnknownCommandLine the connection stays open.
inline constexpr std::string_view kUnknownCommandLine = "error unknown command\n";
inline constexpr std::string_view kLineTooLongLine = "error line too long\n";
// What one pending `message X` costs the hub beyond X itself: its table entry, the index nodes that find
// it by X, origin and target, and the cross-shard messages that carry it (measured sizes, rounded up).
inline constexpr std::size_t kPendingEntryOverheadBytes = 256;
// What one connection's unanswered `message X` may hold, once hub memory is past half its budget, before
// what it sends is held back (until `ok`s bring it down, or memory falls): 1 MiB is thousands of
// messages, far beyond a client that waits for its ok, and small next to the memory budget, so a
// pipelining client is slowed, never cut.
inline constexpr std::size_t kDefaultMaxLinePendingBytes = std::size_t{1} << 20;
// The cost a `message X` is charged while it is pending.
constexpr std::size_t pending_cost(std::size_t x_size) {
  return x_size + kPendingEntryOverheadBytes;
}
// Sent instead of serving a connection past --max-connections; then the hub closes it.
inline constexpr std::string_view kServerFullLine = "error server full\n";
// Sent to a connection that stopped reading past its outbound cap; then the hub closes it.
inline constexpr std::string_view kSlowConsumerLine = "error slow consumer\n";
// Sent to a connection whose line stayed without its "\n" past --frame-timeout-ms; then the hub closes
// it. The partial line is held for the connection, so without it a client could pin it for good.
inline constexpr std::string_view kLineTimeoutLine = "error line timeout\n";
// How every line the hub writes about a failure starts.
inline constexpr std::string_view kErrorLinePrefix = "error ";

// The two verbs, each with the single space that separates it from its payload X.
inline constexpr std::string_view kMessagePrefix = "message ";
inline constexpr std::string_view kOkPrefix = "ok ";
// The shortest --max-line-bytes that lets any message through: "message x", a one-byte X.
inline constexpr std::size_t kShortestUsableMaxLineBytes = kMessagePrefix.size() + 1;

enum class LineStatus : std::uint8_t {
  kOk,       // every byte was consumed; a partial line may be held for the next feed
  kStopped,  // on_line returned false; the bytes after that line were not looked at
  kTooLong,  // a line passed max_line: reply kLineTooLongLine and close; every later feed says so too
};

// on_line(std::string_view line) -> bool: false stops feeding.
template <typename F>
concept LineHandler = requires(F& f, std::string_view line) {
  { f(line) } -> std::convertible_to<bool>;
};

// Contract: owned by one connection on one shard; fed that connection's bytes in stream order.
// A line is what comes before "\n", minus one "\r" right before it. A line that lies whole inside the
// bytes of one feed is passed to on_line as a view into those bytes (zero copy); only a line that spans
// feeds is gathered in an internal string, and those bytes are counted (copied_bytes). Memory held is
// at most max_line + 1 bytes (a full line whose "\r" has come but whose "\n" has not).
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line);

  // Calls on_line for each complete line in `bytes`. The view is valid only during the call. Returns
  // kTooLong as soon as the line being read is certain to pass max_line, before its newline arrives;
  // the lines before it in `bytes` have been delivered by then.
  template <LineHandler OnLine>
  LineStatus feed(std::span<const std::uint8_t> bytes, OnLine&& on_line);

  bool empty() const { return partial_.empty(); }           // no partial line held
  std::size_t buffered() const { return partial_.size(); }  // bytes of the partial line held
  std::uint64_t copied_bytes() const { return copied_bytes_; }
  std::size_t max_line() const { return max_line_; }

 private:
  // Appends [p, p + n) to the partial line and counts the copy.
  void gather(const std::uint8_t* p, std::size_t n);
  // Whether the partial line (no newline yet) can still end within max_line.
  bool partial_may_fit() const;
  // Whether a complete raw line (its "\r" not yet stripped) is within max_line.
  bool fits(std::string_view raw) const;
  LineStatus fail();
  void release_partial();

  std::size_t max_line_;
  std::size_t max_raw_;  // max_line_ + 1: the content plus a "\r"
  std::string partial_;  // a line that spans feeds, without its "\n"; never longer than max_raw_
  std::uint64_t copied_bytes_ = 0;
  bool too_long_ = false;
};

// One parsed line: "message X" or "ok X", exactly one space after the verb and X not empty (X may
// hold spaces and any byte but "\n", and may not end in "\r"). Anything else, the empty line included,
// is kUnknown.
struct LineCommand {
  enum class Verb : std::uint8_t { kMessage, kOk, kUnknown };
  Verb verb = Verb::kUnknown;
  std::string_view payload;  // X, a view into the parsed line; empty for kUnknown
};

LineCommand parse_line(std::string_view line);

// Append "message X\n" / "ok X\n" to `out`.
void append_message_line(std::string& out, std::string_view x);
void append_ok_line(std::string& out, std::string_view x);

template <LineHandler OnLine>
LineStatus LineSplitter::feed(std::span<const std::uint8_t> bytes, OnLine&& on_line) {
  if (too_long_) {
    return LineStatus::kTooLong;
  }
  const std::uint8_t* p = bytes.data();
  const std::uint8_t* const end = p + bytes.size();
  while (p != end) {
    const auto available = static_cast<std::size_t>(end - p);
    // A newline further on than `reach` would end a line longer than max_raw_, so the scan stops there.
    const std::size_t reach = max_raw_ + 1 - partial_.size();
    const std::size_t window = std::min(available, reach);
    const auto* newline = static_cast<const std::uint8_t*>(std::memchr(p, '\n', window));
    if (newline == nullptr) {
      if (window == reach) {
        return fail();
      }
      gather(p, window);
      return partial_may_fit() ? LineStatus::kOk : fail();
    }
    const auto length = static_cast<std::size_t>(newline - p);
    std::string_view raw;
    if (partial_.empty()) {
      raw = std::string_view(reinterpret_cast<const char*>(p), length);
    } else {
      gather(p, length);
      raw = partial_;
    }
    p = newline + 1;
    if (!fits(raw)) {
      return fail();
    }
    if (!raw.empty() && raw.back() == '\r') {
      raw.remove_suffix(1);
    }
    const bool go_on = on_line(raw);
    if (!partial_.empty()) {
      release_partial();
    }
    if (!go_on) {
      return LineStatus::kStopped;
    }
  }
  return LineStatus::kOk;
}

}  // namespace ringhub
