// LineSession: the self-healing line client's rules for one X, with no socket, clock or thread of its
// own: what goes out when a connection opens, what each hub line means, when an attempt is over, and
// whether another follows and after what backoff. The C++ line client and `ringhub-stress --mode line`
// are thin adapters that carry its requests (LineSessionIo) to a uring::ClientLoop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/line_protocol.hpp"
#include "core/result.hpp"
#include "core/retry_backoff.hpp"

namespace ringhub {

// The rules every session of a run shares. Contract: outlives the sessions that hold it.
struct LineSessionConfig {
  std::int64_t ok_timeout_ns = 5'000'000'000;  // from `message X` queued to `ok X` received
  unsigned max_attempts = 10;                  // connections tried in all, the first included
  RetryBackoff backoff;                        // the wait before each attempt after the first
  // Replies held back by their delay plus bytes not yet written. A hub that keeps forwarding while it
  // does not read our oks would grow these without end; past the cap the attempt ends, as the hub cuts
  // a slow consumer.
  std::size_t max_backlog_bytes = std::size_t{4} << 20;
  std::size_t max_line_bytes = kDefaultMaxLineBytes;  // the longest hub line taken
  std::string endpoint;                               // "host:port", for error messages
};

// The timers a session asks for. kOkDue and kOkTimeout belong to the connection that was open when they
// were armed: the adapter drops them when that connection is gone. kRetry belongs to the session.
enum class LineTimer : std::uint8_t {
  kOkDue,      // a delayed `ok Y` may be due
  kOkTimeout,  // the wait for `ok X` on this connection is over
  kRetry,      // the backoff before the next attempt has passed
};

// Hub lines that are no answer to this session's own traffic.
enum class LineSurprise : std::uint8_t {
  kForeignOk,     // `ok Z` for a Z this session did not send
  kDuplicateOk,   // `ok X` again, after the first
  kOtherLine,     // an `error ...` line the hub keeps going after, or a line with no verb
  kLineTooLong,   // the hub's `error line too long`: it closes the connection
  kOverlongLine,  // a hub line longer than max_line_bytes: we close the connection
};

// How a connection ended, as the adapter saw it.
struct LineConnectionEnd {
  bool was_open = false;  // its connect succeeded
  bool eof = false;       // the hub closed its side first
  int error = 0;          // errno of the first failure, 0 for none
};

// What a session asks of its adapter. `tag` is the session's own (LineSession::tag): one adapter serves
// many sessions.
class LineSessionIo {
 public:
  virtual ~LineSessionIo() = default;
  virtual void connect(std::uint32_t tag) = 0;  // opens a connection; on_connected or on_closed follows
  virtual void send(std::uint32_t tag, std::string_view bytes) = 0;  // queues on the open connection
  virtual void close(std::uint32_t tag) = 0;  // closes the connection (again is harmless); on_closed
  // Calls on_timer(timer) `delay_ns` from now (relative, so a slow attempt_failed does not eat a wait).
  virtual void arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) = 0;
  virtual std::size_t unsent_bytes(std::uint32_t tag) const = 0;  // queued, not yet taken by the kernel
  virtual std::int64_t ok_delay_ns(std::uint32_t tag) = 0;        // how long to hold the next `ok Y`
  virtual std::uint64_t random(std::uint32_t tag) = 0;            // a uniform draw, for the backoff jitter
  // Whether to keep the connection after such a line (kLineTooLong and kOverlongLine end it anyway).
  virtual bool keep_after(std::uint32_t tag, LineSurprise what, std::string_view line) = 0;
  // An attempt failed; `backoff_ns` is the wait before the next, or nullopt when the session gives up.
  virtual void attempt_failed(std::uint32_t tag, const Error& why, std::optional<std::int64_t> backoff_ns) {
    (void)tag, (void)why, (void)backoff_ns;
  }
  // The session reached kDone or kFailed; it asks for nothing more.
  virtual void settled(std::uint32_t tag) = 0;
};

struct LineCounts {
  unsigned attempts = 0;            // connection attempts made
  unsigned reconnects = 0;          // connections established after an earlier one was
  unsigned ok_timeouts = 0;         // attempts ended because `ok X` did not come in time
  unsigned connect_timeouts = 0;    // attempts whose connect timed out
  std::uint64_t oks_sent = 0;       // `ok Y` lines written whole, over all connections
  std::uint64_t ignored_lines = 0;  // before `ok X`: foreign oks and other lines the adapter kept
};

// Contract: one per X, driven by one thread through the on_* calls in the order their events happen.
// Every call to the adapter is made from inside one of them.
class LineSession {
 public:
  enum class State : std::uint8_t { kIdle, kConnecting, kOpen, kClosing, kBackoff, kDone, kFailed };

  // `x`: not empty, no newline, no trailing "\r", fits a hub line (the adapter checks).
  LineSession(const LineSessionConfig& config, LineSessionIo& io, std::uint32_t tag, std::string x);

  void start();  // the first attempt
  void on_connected(std::int64_t now_ns);
  void on_bytes(std::span<const std::uint8_t> bytes, std::int64_t now_ns);
  void on_drained(std::int64_t now_ns);  // every queued byte is written
  void on_timer(LineTimer timer, std::int64_t now_ns);
  void on_closed(const LineConnectionEnd& end);
  // Stops for good (cancelled, or a deadline passed): kFailed with `why`, no retry. The adapter closes
  // any open connection itself; its on_closed is then ignored.
  void give_up(Error why);

  State state() const { return state_; }
  bool settled() const { return state_ == State::kDone || state_ == State::kFailed; }
  bool got_ok() const { return ok_ns_.has_value(); }
  std::uint32_t tag() const { return tag_; }
  std::string_view x() const { return x_; }
  const LineCounts& counts() const { return counts_; }
  // kDone: from `message X` written whole (queued, if `ok X` came first) to `ok X` read.
  std::int64_t latency_ns() const { return latency_ns_; }
  // kFailed: the last attempt's error, rephrased "no ok for 'X' after N attempts: last error: ...".
  const Error* failure() const { return state_ == State::kFailed && error_ ? &*error_ : nullptr; }

 private:
  struct DelayedOk {
    std::int64_t due_ns;
    std::uint64_t order;  // arrival order, among oks due at the same time
    std::string y;
  };

  bool on_line(std::string_view line, std::int64_t now_ns);
  bool surprise(LineSurprise what, std::string_view line);
  void hold_ok(std::string_view y, std::int64_t now_ns);
  void release_due_oks(std::int64_t now_ns);
  void after_ok();
  void end_attempt(Error why);
  Error closed_error(const LineConnectionEnd& end, std::string_view hub_error) const;
  void after_failed_attempt(const Error& why);
  void settle(State state);
  void forget_connection();
  std::size_t backlog_bytes() const { return delayed_bytes_ + io_.unsent_bytes(tag_); }

  const LineSessionConfig& config_;
  LineSessionIo& io_;
  std::uint32_t tag_;
  State state_ = State::kIdle;
  std::string x_;
  LineCounts counts_;
  std::int64_t latency_ns_ = 0;
  bool connected_before_ = false;
  // The hub answered `error line too long`: its lines are shorter than X needs, so every resend would
  // be refused the same way and the session fails without another attempt.
  bool x_refused_ = false;

  // The open connection's state, reset by on_connected.
  // Only while connected, so 100k idle sessions stay small: the hub's lines, and the bytes going out
  // (kept between sends so its capacity is reused).
  struct Open {
    explicit Open(std::size_t max_line_bytes) : splitter(max_line_bytes) {}
    LineSplitter splitter;
    std::string out;
    std::string hub_error;  // the last `error ...` line the hub sent (as shown): why it may close
  };
  std::unique_ptr<Open> open_;
  std::vector<DelayedOk> delayed_;  // a min-heap by due time
  std::size_t delayed_bytes_ = 0;
  std::uint64_t next_order_ = 0;
  bool message_unwritten_ = false;   // `message X` queued, not yet written whole
  std::uint64_t oks_unwritten_ = 0;  // `ok Y` lines queued, not yet written whole
  std::int64_t message_ns_ = 0;      // when `message X` was written whole (or queued)
  std::optional<std::int64_t> ok_ns_;
  // While connected: why this side is closing the connection. Once kFailed: the failure.
  std::optional<Error> error_;
};

// X as quoted in messages: at most 64 bytes (not splitting a UTF-8 sequence), control characters as '?'.
std::string shown_line_payload(std::string_view x);
// "1 attempt", "N attempts": how every failure text counts them.
std::string attempts_text(unsigned n);

}  // namespace ringhub
