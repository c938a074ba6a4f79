// run_line_client: one thread, one non-blocking socket at a time, poll() until the nearest deadline
// (a delayed ok falling due or the wait for `ok X` running out). Lines are cut by core's LineSplitter.
// See clients/cpp/line_client.hpp for the contract.
#include "clients/cpp/line_client.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "clients/cpp/tcp_connect.hpp"
#include "core/line_protocol.hpp"

namespace ringhub::client {

namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// Longest line accepted from the hub: the hub's own default limit, so every line it forwards fits. A
// longer one means a broken or hostile peer: drop the connection rather than buffer without end.
constexpr std::size_t kMaxHubLineBytes = kDefaultMaxLineBytes;

// Longest X we send: `message X` must fit one hub line, or the hub answers `error line too long`.
constexpr std::size_t kMaxMessageBytes = kDefaultMaxLineBytes - kMessagePrefix.size();

// Bytes one recv() asks for: a full hub line, so a burst of short ones costs one syscall.
constexpr std::size_t kReadChunk = std::size_t{64} << 10;

// Replies held back by ok_delay plus replies not yet written, in bytes. A hub that keeps forwarding
// messages while it does not read our oks would otherwise grow this without bound; past the cap we
// drop the connection, as the hub drops a slow consumer.
constexpr std::size_t kMaxBacklogBytes = std::size_t{4} << 20;

// Written bytes kept at the front of the output buffer before they are erased; erasing on every
// partial write would move the unsent tail each time.
constexpr std::size_t kOutputCompactBytes = std::size_t{64} << 10;

// X as quoted in error messages: cut to this many bytes so a 64 KiB X does not flood a terminal.
constexpr std::size_t kShownMessageBytes = 64;

// X is our own text, but may hold control characters: show them as '?' and keep lines short.
std::string shown(std::string_view x) {
  std::size_t cut = std::min(x.size(), kShownMessageBytes);
  while (cut > 0 && cut < x.size() && (static_cast<unsigned char>(x[cut]) & 0xC0) == 0x80) {
    --cut;  // do not split a UTF-8 sequence
  }
  std::string text(x.substr(0, cut));
  const auto control = [](char c) { return (c >= 0 && c < 0x20) || c == 0x7f; };
  std::replace_if(text.begin(), text.end(), control, '?');
  return cut < x.size() ? text + "..." : text;
}

std::string_view without_newline(std::string_view line) {
  return line.substr(0, line.size() - 1);
}

Result<void> validate(const LineClientOptions& o) {
  const auto invalid = [](std::string message) { return system_error(EINVAL, std::move(message)); };
  const std::string_view x = o.message;
  if (x.empty()) {
    return invalid("the message is empty: the hub reads `message ` with nothing after it as unknown");
  }
  if (x.find('\n') != std::string_view::npos) {
    return invalid("the message contains a newline, which would end its line early");
  }
  if (x.back() == '\r') {
    return invalid("the message ends in \"\\r\", which the hub would strip as half of a CRLF");
  }
  if (x.size() > kMaxMessageBytes) {
    return invalid(fmt::format("the message is {} bytes; a hub line holds at most {}, so X at most {}",
                               x.size(), kDefaultMaxLineBytes, kMaxMessageBytes));
  }
  if (o.port == 0) {
    return invalid("the hub port is 0");
  }
  if (o.max_attempts == 0) {
    return invalid("max_attempts is 0: there must be at least one attempt");
  }
  if (o.timeout <= Ms{0}) {
    return invalid(fmt::format("the timeout must be positive, not {} ms", o.timeout.count()));
  }
  if (o.ok_delay < Ms{0} || o.backoff_initial < Ms{0} || o.backoff_max < Ms{0}) {
    return invalid("ok_delay and the backoff times must not be negative");
  }
  return {};
}

bool cancelled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

// What poll() should wait to reach `until`: rounded up, so a wait never wakes just short of a deadline
// and spins through zero-length polls; no longer than kLineCancelCheck when the wait can be cancelled.
int poll_ms(Clock::time_point until, bool cancellable) {
  Ms left = std::max(std::chrono::ceil<Ms>(until - Clock::now()), Ms{0});
  if (cancellable) {
    left = std::min(left, kLineCancelCheck);
  }
  return static_cast<int>(std::min<Ms::rep>(left.count(), std::numeric_limits<int>::max()));
}

// Waits for `events` on `fd` (fd -1: only for time to pass) until `until`, across signals and cancel
// checks. Returns the events that came, or 0 once `until` is reached.
Result<short> wait_until(int fd, short events, Clock::time_point until, const std::atomic<bool>* cancel) {
  for (;;) {
    if (cancelled(cancel)) {
      return system_error(ECANCELED, "cancelled");
    }
    pollfd p{fd, events, 0};
    const int ready = ::poll(&p, 1, poll_ms(until, cancel != nullptr));
    if (ready > 0) {
      return p.revents;  // an error or hangup shows up in the syscall that follows
    }
    if (ready == 0 && Clock::now() >= until) {
      return static_cast<short>(0);
    }
    if (ready < 0 && errno != EINTR) {
      return errno_error("poll failed");
    }
  }
}

Result<UniqueFd> connect_hub(const LineClientOptions& o, const std::atomic<bool>* cancel) {
  return tcp_connect(o.host, o.port, Clock::now() + o.timeout, cancel);
}

// The wait before each retry: doubling from backoff_initial up to backoff_max, jittered.
class Backoff {
 public:
  // Clients cut off together must not draw the same jitter: the seed mixes the clock and the pid.
  Backoff(Ms initial, Ms max)
      : initial_(initial),
        max_(max),
        rng_(static_cast<std::uint_fast32_t>(Clock::now().time_since_epoch().count()) ^
             static_cast<std::uint_fast32_t>(::getpid())) {}

  // Precondition: attempt >= 2.
  Ms before_attempt(unsigned attempt) {
    Ms full = std::min(initial_, max_);
    for (unsigned n = 2; n < attempt && full < max_; ++n) {
      full = full > max_ / 2 ? max_ : full * 2;
    }
    // "Equal jitter": between half and all of the full wait, so the backoff still grows.
    std::uniform_int_distribution<Ms::rep> pick(full.count() / 2, full.count());
    return Ms{pick(rng_)};
  }

 private:
  Ms initial_;
  Ms max_;
  std::minstd_rand rng_;
};

// One connection's life: send `message X`, answer every `message Y` in arrival order, wait for `ok X`.
// Contract: owns the socket; runs on the run_line_client thread; never outlives one attempt.
class LineSession {
 public:
  LineSession(UniqueFd fd, const LineClientOptions& options, LineOutcome& outcome,
              std::vector<std::uint8_t>& rx)
      : fd_(std::move(fd)), options_(options), outcome_(outcome), rx_(rx) {}

  // The latency of `ok X` once it arrives; otherwise why this connection is done with.
  Result<std::chrono::nanoseconds> run(const std::atomic<bool>* cancel);

 private:
  // A `message Y` waiting for its ok_delay to pass. ok_delay is one value, so the queue in arrival
  // order is also the queue in due order, and its front is the next one due.
  struct DelayedOk {
    Clock::time_point due;
    std::string x;
  };

  Result<bool> receive();
  bool on_line(std::string_view line);
  void release_due_replies(Clock::time_point now);
  Result<void> flush();
  void account_written();
  bool output_pending() const { return out_sent_ < out_.size(); }
  std::size_t backlog_bytes() const { return delayed_bytes_ + (out_.size() - out_sent_); }

  UniqueFd fd_;
  const LineClientOptions& options_;
  LineOutcome& outcome_;
  std::vector<std::uint8_t>& rx_;  // the receive buffer, shared by the sessions of one run
  LineSplitter splitter_{kMaxHubLineBytes};

  std::deque<DelayedOk> delayed_;
  std::size_t delayed_bytes_ = 0;

  // Lines due to be written: out_[out_sent_, out_.size()). `message X` comes first; ok_ends_ holds where
  // each `ok Y` line ends, so oks_sent counts only lines that reached the kernel whole.
  std::string out_;
  std::size_t out_sent_ = 0;
  std::optional<std::size_t> message_end_;
  std::deque<std::size_t> ok_ends_;

  Clock::time_point message_written_at_;
  Clock::time_point batch_time_;            // when the bytes being split were read
  std::optional<Error> dropped_;            // set by on_line when a line ends the connection
  std::optional<Clock::time_point> ok_at_;  // set by on_line when `ok X` arrives
};

Result<std::chrono::nanoseconds> LineSession::run(const std::atomic<bool>* cancel) {
  message_written_at_ = Clock::now();
  const Clock::time_point ok_deadline = message_written_at_ + options_.timeout;
  append_message_line(out_, options_.message);
  message_end_ = out_.size();
  for (;;) {
    const Clock::time_point now = Clock::now();
    release_due_replies(now);
    if (Result<void> written = flush(); !written) {
      return written.error();
    }
    if (now >= ok_deadline) {
      return system_error(ETIMEDOUT, fmt::format("no ok within {} ms", options_.timeout.count()));
    }
    const Clock::time_point until =
        delayed_.empty() ? ok_deadline : std::min(ok_deadline, delayed_.front().due);
    const short events = static_cast<short>(POLLIN | (output_pending() ? POLLOUT : 0));
    Result<short> ready = wait_until(fd_.get(), events, until, cancel);
    if (!ready) {
      return ready.error();
    }
    if ((*ready & (POLLIN | POLLHUP | POLLERR)) == 0) {
      continue;  // a deadline, or room to write: the top of the loop handles both
    }
    Result<bool> got_ok = receive();
    if (!got_ok) {
      return got_ok.error();
    }
    if (*got_ok) {
      // Answers already due go out before we close, as far as the socket takes them without waiting;
      // whatever it does not take, the hub forwards again to someone else once we are gone.
      // A write error here changes nothing: we have our ok and close either way.
      release_due_replies(*ok_at_);
      static_cast<void>(flush());
      return *ok_at_ - message_written_at_;
    }
  }
}

// Reads once and handles every complete line. True once `ok X` has come.
Result<bool> LineSession::receive() {
  ssize_t got = 0;
  do {
    got = ::recv(fd_.get(), rx_.data(), rx_.size(), 0);
  } while (got < 0 && errno == EINTR);
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return false;
  }
  if (got < 0) {
    return errno_error("cannot read from hub");
  }
  if (got == 0) {
    return make_error("hub closed the connection");
  }
  batch_time_ = Clock::now();
  const auto bytes = std::span<const std::uint8_t>(rx_.data(), static_cast<std::size_t>(got));
  const LineStatus status = splitter_.feed(bytes, [this](std::string_view line) { return on_line(line); });
  if (status == LineStatus::kTooLong) {
    return system_error(EPROTO, fmt::format("hub sent a line longer than {} bytes", kMaxHubLineBytes));
  }
  if (ok_at_) {
    return true;
  }
  if (dropped_) {
    return *dropped_;
  }
  if (backlog_bytes() > kMaxBacklogBytes) {
    return system_error(
        ENOBUFS, fmt::format("hub is not reading our replies: {} bytes of oks held back", backlog_bytes()));
  }
  return false;
}

// False stops the splitter: `ok X` came, or the hub said it is closing.
bool LineSession::on_line(std::string_view line) {
  const LineCommand command = parse_line(line);
  switch (command.verb) {
    case LineCommand::Verb::kMessage:
      delayed_.push_back({batch_time_ + options_.ok_delay, std::string(command.payload)});
      delayed_bytes_ += command.payload.size();
      return true;
    case LineCommand::Verb::kOk:
      if (command.payload == options_.message) {
        ok_at_ = batch_time_;
        return false;
      }
      ++outcome_.ignored_lines;  // someone else's ok: the hub routes oks by X, which may repeat
      return true;
    case LineCommand::Verb::kUnknown: break;
  }
  if (line == without_newline(kLineTooLongLine)) {
    // Our lines are checked against the hub's default limit, so the hub runs with a smaller one.
    dropped_ = system_error(EMSGSIZE, "hub closed the connection: error line too long");
    return false;
  }
  // `error unknown command` (the hub keeps going after it), other error lines, and lines that are no
  // verb at all: none of them concerns our X, and the ok timeout still bounds the wait.
  ++outcome_.ignored_lines;
  return true;
}

void LineSession::release_due_replies(Clock::time_point now) {
  while (!delayed_.empty() && delayed_.front().due <= now) {
    append_ok_line(out_, delayed_.front().x);
    ok_ends_.push_back(out_.size());
    delayed_bytes_ -= delayed_.front().x.size();
    delayed_.pop_front();
  }
}

// Writes what the socket takes without waiting; the rest waits for POLLOUT.
Result<void> LineSession::flush() {
  while (output_pending()) {
    // MSG_NOSIGNAL: a hub that hung up must give us EPIPE to handle, not kill us with SIGPIPE.
    const ssize_t sent = ::send(fd_.get(), out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) {
      continue;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    }
    if (sent < 0) {
      return errno_error("cannot write to hub");
    }
    out_sent_ += static_cast<std::size_t>(sent);
    account_written();
  }
  return {};
}

// Counts the lines written whole, then drops written bytes from the buffer.
void LineSession::account_written() {
  if (message_end_ && out_sent_ >= *message_end_) {
    message_written_at_ = Clock::now();
    message_end_.reset();
  }
  while (!ok_ends_.empty() && ok_ends_.front() <= out_sent_) {
    ++outcome_.oks_sent;
    ok_ends_.pop_front();
  }
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  } else if (out_sent_ >= kOutputCompactBytes) {
    out_.erase(0, out_sent_);
    for (std::size_t& end : ok_ends_) {
      end -= out_sent_;
    }
    if (message_end_) {
      *message_end_ -= out_sent_;
    }
    out_sent_ = 0;
  }
}

// One connection attempt, from resolving the host to `ok X` or the loss of the connection.
Result<std::chrono::nanoseconds> run_attempt(const LineClientOptions& o, LineOutcome& outcome,
                                             std::vector<std::uint8_t>& rx, bool& connected_before,
                                             const std::atomic<bool>* cancel) {
  Result<UniqueFd> fd = connect_hub(o, cancel);
  if (!fd) {
    return fd.error();
  }
  if (connected_before) {
    ++outcome.reconnects;
  }
  connected_before = true;
  LineSession session(std::move(fd).value(), o, outcome, rx);
  return session.run(cancel);
}

std::string attempts_text(unsigned n) {
  return fmt::format("{} attempt{}", n, n == 1 ? "" : "s");
}

}  // namespace

Result<LineOutcome> run_line_client(const LineClientOptions& options, const std::atomic<bool>* cancel) {
  if (Result<void> valid = validate(options); !valid) {
    return valid.error();
  }
  const auto cancelled_error = [&](unsigned attempt) {
    return system_error(ECANCELED, fmt::format("cancelled before '{}' was answered ({} made)",
                                               shown(options.message), attempts_text(attempt)));
  };
  LineOutcome outcome;
  Backoff backoff(options.backoff_initial, options.backoff_max);
  std::vector<std::uint8_t> rx(kReadChunk);
  bool connected_before = false;
  Error last;
  for (unsigned attempt = 1;; ++attempt) {
    if (cancelled(cancel)) {
      return cancelled_error(attempt - 1);
    }
    outcome.attempts = attempt;
    Result<std::chrono::nanoseconds> latency = run_attempt(options, outcome, rx, connected_before, cancel);
    if (latency) {
      outcome.latency = *latency;
      return outcome;
    }
    if (cancelled(cancel)) {
      return cancelled_error(attempt);
    }
    last = latency.error();
    if (last.is_system(ETIMEDOUT)) {
      ++outcome.timeouts;
    }
    if (attempt == options.max_attempts) {
      break;
    }
    const Ms pause = backoff.before_attempt(attempt + 1);
    if (options.on_retry) {
      options.on_retry(LineRetry{attempt, last, pause});
    }
    if (Result<short> slept = wait_until(-1, 0, Clock::now() + pause, cancel); !slept) {
      return cancelled(cancel) ? cancelled_error(attempt) : slept.error();
    }
  }
  return rephrase(last, fmt::format("no ok for '{}' after {}: last error: {}", shown(options.message),
                                    attempts_text(options.max_attempts), last.message));
}

}  // namespace ringhub::client
