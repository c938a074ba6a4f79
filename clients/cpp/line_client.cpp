// run_line_client: one connection at a time on the io_uring engine (a uring::ClientLoop of one slot),
// its deadlines as the loop's timers: a delayed ok falling due, the wait for `ok X` running out, the
// backoff before the next attempt. Lines are cut by core's LineSplitter.
// See clients/cpp/line_client.hpp for the contract.
#include "clients/cpp/line_client.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <deque>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "clients/cpp/hub_address.hpp"
#include "core/line_protocol.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::client {

namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// Longest line accepted from the hub: the hub's own default limit, so every line it forwards fits. A
// longer one means a broken or hostile peer: drop the connection rather than buffer without end.
constexpr std::size_t kMaxHubLineBytes = kDefaultMaxLineBytes;

// Longest X we send: `message X` must fit one hub line, or the hub answers `error line too long`.
constexpr std::size_t kMaxMessageBytes = kDefaultMaxLineBytes - kMessagePrefix.size();

// Receive memory: provided buffers the kernel fills as lines arrive (a long hub line spans several;
// the splitter gathers it). When all are in use reading pauses until the loop has handled them.
constexpr unsigned kRecvBuffers = 8;
constexpr std::uint32_t kRecvBufferSize = std::uint32_t{16} << 10;

// Replies held back by ok_delay plus replies not yet written, in bytes. A hub that keeps forwarding
// messages while it does not read our oks would otherwise grow this without bound; past the cap we
// drop the connection, as the hub drops a slow consumer.
constexpr std::size_t kMaxBacklogBytes = std::size_t{4} << 20;

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

// The loop's timers, told apart by kind.
enum TimerKind : std::uint32_t {
  kOkDue = 1,  // the oldest delayed `ok Y` is due
  kOkTimeout,  // the wait for `ok X` on this connection is over
  kRetry,      // the backoff before the next attempt has passed
};

std::string attempts_text(unsigned n) {
  return fmt::format("{} attempt{}", n, n == 1 ? "" : "s");
}

std::int64_t to_ns(Ms ms) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

// The whole run, one connection at a time: each attempt connects (trying each address of the host in
// turn), sends `message X`, answers every `message Y` in arrival order after ok_delay, and waits for
// `ok X`. Contract: created, run and destroyed on the run_line_client thread.
class LineRun final : private uring::ClientDriver {
 public:
  LineRun(const LineClientOptions& options, std::vector<uring::SocketAddress> hubs,
          const std::atomic<bool>* cancel);
  Result<LineOutcome> run();

 private:
  // A `message Y` waiting for its ok_delay. ok_delay is one value, so the queue in arrival order is
  // also the queue in due order.
  struct DelayedOk {
    std::int64_t due_ns;
    std::string y;
  };

  uring::ClientConn& conn() { return loop_.conn(0); }
  void start_attempt();
  void on_connected(uring::ClientConn& c) override;
  void on_bytes(uring::ClientConn& c, std::span<const std::uint8_t> bytes) override;
  void on_drained(uring::ClientConn& c) override;
  void on_closed(uring::ClientConn& c, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  bool finished() const override { return false; }

  bool on_line(std::string_view line);
  void release_due_replies(std::int64_t now);
  void end_connection(Error why);
  Error connect_failure(const uring::CloseInfo& info) const;
  void after_failed_attempt(Error why);
  Error cancelled_error() const;
  std::size_t backlog_bytes() const {
    return delayed_bytes_ + uring::ClientLoop::unsent_bytes(loop_.conn(0));
  }

  const LineClientOptions& options_;
  const std::atomic<bool>* cancel_;
  std::size_t address_count_;
  uring::ClientLoop loop_;
  Backoff backoff_;
  LineOutcome outcome_;
  std::optional<Result<LineOutcome>> result_;  // set once the run is over
  std::uint32_t route_ = 0;                    // the address this attempt is trying
  std::int64_t connect_deadline_ns_ = 0;       // when this attempt stops trying further addresses
  bool connected_before_ = false;
  bool stopping_ = false;  // cancelled: closing for good

  // The connection's state, reset by on_connected.
  std::optional<LineSplitter> splitter_;
  std::deque<DelayedOk> delayed_;
  std::size_t delayed_bytes_ = 0;
  std::string line_;                     // scratch for one line being queued
  bool message_unwritten_ = false;       // `message X` queued, its send not yet complete
  std::uint64_t oks_unwritten_ = 0;      // `ok Y` lines queued, their send not yet complete
  std::int64_t message_written_ns_ = 0;  // when `message X` was written whole
  std::int64_t batch_ns_ = 0;            // when the bytes being split were read
  std::optional<Error> ended_;           // why this side is closing the connection
  std::optional<std::int64_t> ok_ns_;    // when `ok X` arrived
};

LineRun::LineRun(const LineClientOptions& options, std::vector<uring::SocketAddress> hubs,
                 const std::atomic<bool>* cancel)
    : options_(options),
      cancel_(cancel),
      address_count_(hubs.size()),
      loop_([&] {
        uring::ClientLoopConfig config;
        config.conns = 1;
        config.table_size = 4;
        config.buffer_count = kRecvBuffers;
        config.buffer_size = kRecvBufferSize;
        config.buffer_residency = uring::BufferRing::Residency::kOnDemand;  // pages fault in as used
        config.hubs = std::move(hubs);
        config.connect_timeout_ns = to_ns(options.timeout);
        config.sq_entries = 32;
        config.cq_entries = 64;
        return config;
      }()),
      backoff_(options.backoff_initial, options.backoff_max) {
  loop_.set_driver(this);
}

Result<LineOutcome> LineRun::run() {
  if (Result<void> ready = loop_.init(); !ready) {
    return ready.error();
  }
  start_attempt();
  loop_.run_until(-1, [this] { return result_.has_value() || cancelled(cancel_); });
  if (!result_) {
    stopping_ = true;     // the close below is not a failed attempt: no retry follows it
    loop_.close(conn());  // cancelled: the loop wakes at least every 50 ms (kLineCancelCheck) to see it
    loop_.run_until(uring::now_ns() + to_ns(kLineCancelCheck),
                    [this] { return conn().phase == uring::ConnPhase::kIdle; });
    return cancelled_error();
  }
  return std::move(*result_);
}

Error LineRun::cancelled_error() const {
  return system_error(ECANCELED, fmt::format("cancelled before '{}' was answered ({} made)",
                                             shown(options_.message), attempts_text(outcome_.attempts)));
}

void LineRun::start_attempt() {
  ++outcome_.attempts;
  route_ = 0;
  connect_deadline_ns_ = uring::now_ns() + to_ns(options_.timeout);
  loop_.connect(conn(), route_);
}

void LineRun::on_connected(uring::ClientConn& c) {
  if (connected_before_) {
    ++outcome_.reconnects;
  }
  connected_before_ = true;
  splitter_.emplace(kMaxHubLineBytes);
  delayed_.clear();
  delayed_bytes_ = 0;
  oks_unwritten_ = 0;
  ended_.reset();
  ok_ns_.reset();
  line_.clear();
  append_message_line(line_, options_.message);
  loop_.send(c, line_);
  message_unwritten_ = true;
  message_written_ns_ = uring::now_ns();
  loop_.add_timer(
      uring::ClientTimer{message_written_ns_ + to_ns(options_.timeout), c.index, c.gen, kOkTimeout, 0});
}

void LineRun::on_bytes(uring::ClientConn& c, std::span<const std::uint8_t> bytes) {
  if (ended_ || ok_ns_) {
    return;  // closing: nothing more to answer
  }
  batch_ns_ = uring::now_ns();
  const LineStatus status = splitter_->feed(bytes, [this](std::string_view line) { return on_line(line); });
  if (status == LineStatus::kTooLong) {
    end_connection(
        system_error(EPROTO, fmt::format("hub sent a line longer than {} bytes", kMaxHubLineBytes)));
    return;
  }
  if (ended_) {
    loop_.close(c);
    return;
  }
  release_due_replies(batch_ns_);
  if (ok_ns_) {
    // Answers already due go out before we close: at once when the kernel takes them now, else at the
    // ok timeout at the latest. Whatever is never written, the hub forwards again once we are gone.
    if (loop_.unsent_bytes(c) == 0) {
      loop_.close(c);
    }
    return;
  }
  if (backlog_bytes() > kMaxBacklogBytes) {
    end_connection(system_error(
        ENOBUFS, fmt::format("hub is not reading our replies: {} bytes of oks held back", backlog_bytes())));
  }
}

// False stops the splitter: `ok X` came, or the hub said it is closing.
bool LineRun::on_line(std::string_view line) {
  const LineCommand command = parse_line(line);
  switch (command.verb) {
    case LineCommand::Verb::kMessage: {
      const std::int64_t due = batch_ns_ + to_ns(options_.ok_delay);
      delayed_.push_back({due, std::string(command.payload)});
      delayed_bytes_ += command.payload.size();
      if (options_.ok_delay > Ms{0}) {
        loop_.add_timer(uring::ClientTimer{due, 0, conn().gen, kOkDue, 0});
      }
      return true;
    }
    case LineCommand::Verb::kOk:
      if (command.payload == options_.message) {
        ok_ns_ = batch_ns_;
        return false;
      }
      ++outcome_.ignored_lines;  // someone else's ok: the hub routes oks by X, which may repeat
      return true;
    case LineCommand::Verb::kUnknown: break;
  }
  if (line == without_newline(kLineTooLongLine)) {
    // Our lines are checked against the hub's default limit, so the hub runs with a smaller one.
    ended_ = system_error(EMSGSIZE, "hub closed the connection: error line too long");
    return false;
  }
  // `error unknown command` (the hub keeps going after it), other error lines, and lines that are no
  // verb at all: none of them concerns our X, and the ok timeout still bounds the wait.
  ++outcome_.ignored_lines;
  return true;
}

void LineRun::release_due_replies(std::int64_t now) {
  bool queued = false;
  while (!delayed_.empty() && delayed_.front().due_ns <= now) {
    line_.clear();
    append_ok_line(line_, delayed_.front().y);
    std::vector<std::uint8_t>& out = loop_.out(conn());
    out.insert(out.end(), line_.begin(), line_.end());
    ++oks_unwritten_;
    delayed_bytes_ -= delayed_.front().y.size();
    delayed_.pop_front();
    queued = true;
  }
  if (queued) {
    loop_.flush(conn());
  }
}

// Every queued byte is written: the lines in it count as sent whole.
void LineRun::on_drained(uring::ClientConn& c) {
  if (message_unwritten_) {
    message_unwritten_ = false;
    if (!ok_ns_) {  // drained after `ok X` came (oks queued behind it): keep the time it was queued
      message_written_ns_ = uring::now_ns();
    }
  }
  outcome_.oks_sent += std::exchange(oks_unwritten_, 0);
  if (ok_ns_) {
    loop_.close(c);
  }
}

void LineRun::on_timer(const uring::ClientTimer& timer) {
  uring::ClientConn& c = conn();
  const bool current = timer.gen == c.gen && c.phase == uring::ConnPhase::kOpen;
  switch (timer.kind) {
    case kRetry:
      if (!stopping_) {
        start_attempt();
      }
      return;
    case kOkDue:
      if (current && !ended_ && !ok_ns_) {
        release_due_replies(uring::now_ns());
      }
      return;
    case kOkTimeout:
      if (!current) {
        return;
      }
      if (ok_ns_ || ended_) {
        loop_.close(c);  // the answers due after `ok X` were not taken in time
        return;
      }
      end_connection(system_error(ETIMEDOUT, fmt::format("no ok within {} ms", options_.timeout.count())));
      return;
  }
}

void LineRun::end_connection(Error why) {
  ended_ = std::move(why);
  loop_.close(conn());
}

Error LineRun::connect_failure(const uring::CloseInfo& info) const {
  const int err = info.error != 0 ? info.error : ECONNREFUSED;
  const std::string why =
      err == ETIMEDOUT ? "timed out while connecting" : std::system_category().message(err);
  return system_error(
      err, fmt::format("cannot reach hub at {}: {}", endpoint_text(options_.host, options_.port), why));
}

void LineRun::on_closed(uring::ClientConn& c, const uring::CloseInfo& info) {
  if (stopping_) {
    return;
  }
  if (ok_ns_) {
    outcome_.latency = std::chrono::nanoseconds(*ok_ns_ - message_written_ns_);
    result_ = outcome_;
    return;
  }
  if (!info.was_open) {
    const std::int64_t left_ns = connect_deadline_ns_ - uring::now_ns();
    if (route_ + 1 < address_count_ && left_ns > 0) {
      loop_.connect(c, ++route_, left_ns);  // the next address of the name, within the same attempt
      return;
    }
    after_failed_attempt(connect_failure(info));
    return;
  }
  if (ended_) {
    after_failed_attempt(*std::exchange(ended_, std::nullopt));
  } else if (info.eof || info.error == 0) {
    after_failed_attempt(make_error("hub closed the connection"));
  } else {
    after_failed_attempt(system_error(
        info.error, fmt::format("connection to hub failed: {}", std::system_category().message(info.error))));
  }
}

void LineRun::after_failed_attempt(Error why) {
  if (why.is_system(ETIMEDOUT)) {
    ++outcome_.timeouts;
  }
  if (outcome_.attempts >= options_.max_attempts) {
    result_ = rephrase(why, fmt::format("no ok for '{}' after {}: last error: {}", shown(options_.message),
                                        attempts_text(options_.max_attempts), why.message));
    return;
  }
  const Ms pause = backoff_.before_attempt(outcome_.attempts + 1);
  if (options_.on_retry) {
    options_.on_retry(LineRetry{outcome_.attempts, why, pause});
  }
  loop_.add_timer(uring::ClientTimer{uring::now_ns() + to_ns(pause), 0, conn().gen, kRetry, 0});
}

}  // namespace

Result<LineOutcome> run_line_client(const LineClientOptions& options, const std::atomic<bool>* cancel) {
  if (Result<void> valid = validate(options); !valid) {
    return valid.error();
  }
  Result<std::vector<uring::SocketAddress>> hubs = resolve_hub(options.host, options.port);
  if (!hubs) {
    return hubs.error();
  }
  LineRun run(options, std::move(*hubs), cancel);
  return run.run();
}

}  // namespace ringhub::client
