// run_line_client: core's LineSession (the self-healing rules) on the io_uring engine, one connection
// at a time in a uring::ClientLoop of one slot; its deadlines are the loop's timers.
// See clients/cpp/line_client.hpp for the contract.
#include "clients/cpp/line_client.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "clients/cpp/hub_address.hpp"
#include "core/line_protocol.hpp"
#include "core/line_session.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::client {

namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// Longest X we send: `message X` must fit one hub line, or the hub answers `error line too long`.
constexpr std::size_t kMaxMessageBytes = kDefaultMaxLineBytes - kMessagePrefix.size();

// Receive memory: provided buffers the kernel fills as lines arrive (a long hub line spans several;
// the splitter gathers it). When all are in use reading pauses until the loop has handled them.
constexpr unsigned kRecvBuffers = 8;
constexpr std::uint32_t kRecvBufferSize = std::uint32_t{16} << 10;

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

std::int64_t to_ns(Ms ms) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

LineSessionConfig session_config(const LineClientOptions& o) {
  LineSessionConfig config;
  config.ok_timeout_ns = to_ns(o.timeout);
  config.max_attempts = o.max_attempts;
  config.backoff = RetryBackoff{to_ns(o.backoff_initial), to_ns(o.backoff_max)};
  config.endpoint = endpoint_text(o.host, o.port);
  return config;
}

// The whole run: a LineSession (core/line_session.hpp) over one connection slot of a ClientLoop, its
// timers as the loop's. The one rule kept here is the host's addresses: an attempt whose connect fails
// tries the next address within the same timeout before the session hears of it.
// Contract: created, run and destroyed on the run_line_client thread.
class LineRun final : private uring::ClientDriver, private LineSessionIo {
 public:
  LineRun(const LineClientOptions& options, std::vector<uring::SocketAddress> hubs,
          const std::atomic<bool>* cancel);
  Result<LineOutcome> run();

 private:
  uring::ClientConn& conn() { return loop_.conn(0); }

  // uring::ClientDriver
  void on_connected(uring::ClientConn& c) override;
  void on_bytes(uring::ClientConn& c, std::span<const std::uint8_t> bytes) override;
  void on_drained(uring::ClientConn& c) override;
  void on_closed(uring::ClientConn& c, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  bool finished() const override { return session_.settled(); }

  // LineSessionIo
  void connect(std::uint32_t tag) override;
  void send(std::uint32_t tag, std::string_view bytes) override;
  void close(std::uint32_t tag) override;
  void arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) override;
  std::size_t unsent_bytes(std::uint32_t tag) const override;
  std::int64_t ok_delay_ns(std::uint32_t tag) override;
  std::uint64_t random(std::uint32_t tag) override;
  bool keep_after(std::uint32_t tag, LineSurprise what, std::string_view line) override;
  void attempt_failed(std::uint32_t tag, const Error& why, std::optional<std::int64_t> backoff_ns) override;
  void settled(std::uint32_t tag) override { (void)tag; }

  LineOutcome outcome() const;

  const LineClientOptions& options_;
  const std::atomic<bool>* cancel_;
  const LineSessionConfig config_;
  std::size_t address_count_;
  uring::ClientLoop loop_;
  LineSession session_;
  // Clients cut off together must not draw the same jitter: the seed mixes the clock and the pid.
  std::mt19937_64 rng_;
  std::uint32_t route_ = 0;               // the address this attempt is trying
  std::int64_t connect_deadline_ns_ = 0;  // when this attempt stops trying further addresses
};

LineRun::LineRun(const LineClientOptions& options, std::vector<uring::SocketAddress> hubs,
                 const std::atomic<bool>* cancel)
    : options_(options),
      cancel_(cancel),
      config_(session_config(options)),
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
      session_(config_, *this, 0, options.message),
      rng_(static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
           static_cast<std::uint64_t>(::getpid())) {
  loop_.set_driver(this);
}

Result<LineOutcome> LineRun::run() {
  if (Result<void> ready = loop_.init(); !ready) {
    return ready.error();
  }
  session_.start();
  loop_.run_until(-1, [this] { return session_.settled() || cancelled(cancel_); });
  if (!session_.settled()) {
    session_.give_up(
        system_error(ECANCELED, fmt::format("cancelled before '{}' was answered ({} attempt{} made)",
                                            shown_line_payload(options_.message), session_.counts().attempts,
                                            session_.counts().attempts == 1 ? "" : "s")));
    loop_.close(conn());  // cancelled: the loop wakes at least every 50 ms (kLineCancelCheck) to see it
    loop_.run_until(uring::now_ns() + to_ns(kLineCancelCheck),
                    [this] { return conn().phase == uring::ConnPhase::kIdle; });
  }
  if (session_.state() == LineSession::State::kDone) {
    return outcome();
  }
  return *session_.failure();
}

LineOutcome LineRun::outcome() const {
  const LineCounts& counts = session_.counts();
  LineOutcome outcome;
  outcome.attempts = counts.attempts;
  outcome.reconnects = counts.reconnects;
  outcome.timeouts = counts.ok_timeouts + counts.connect_timeouts;
  outcome.oks_sent = counts.oks_sent;
  outcome.ignored_lines = counts.ignored_lines;
  outcome.latency = std::chrono::nanoseconds(session_.latency_ns());
  return outcome;
}

void LineRun::on_connected(uring::ClientConn& c) {
  (void)c;
  session_.on_connected(uring::now_ns());
}

void LineRun::on_bytes(uring::ClientConn& c, std::span<const std::uint8_t> bytes) {
  (void)c;
  session_.on_bytes(bytes, uring::now_ns());
}

void LineRun::on_drained(uring::ClientConn& c) {
  (void)c;
  session_.on_drained(uring::now_ns());
}

void LineRun::on_timer(const uring::ClientTimer& timer) {
  const auto kind = static_cast<LineTimer>(timer.kind);
  const uring::ClientConn& c = conn();
  if (kind != LineTimer::kRetry && (timer.gen != c.gen || c.phase != uring::ConnPhase::kOpen)) {
    return;  // armed for a connection that is gone
  }
  session_.on_timer(kind, uring::now_ns());
}

void LineRun::on_closed(uring::ClientConn& c, const uring::CloseInfo& info) {
  if (!info.was_open && !session_.settled()) {
    const std::int64_t left_ns = connect_deadline_ns_ - uring::now_ns();
    if (route_ + 1 < address_count_ && left_ns > 0) {
      loop_.connect(c, ++route_, left_ns);  // the next address of the name, within the same attempt
      return;
    }
  }
  session_.on_closed(LineConnectionEnd{info.was_open, info.eof, info.error});
}

void LineRun::connect(std::uint32_t tag) {
  (void)tag;
  route_ = 0;
  connect_deadline_ns_ = uring::now_ns() + to_ns(options_.timeout);
  loop_.connect(conn(), route_);
}

void LineRun::send(std::uint32_t tag, std::string_view bytes) {
  (void)tag;
  loop_.send(conn(), bytes);
}

void LineRun::close(std::uint32_t tag) {
  (void)tag;
  loop_.close(conn());
}

void LineRun::arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) {
  loop_.add_timer(
      uring::ClientTimer{uring::now_ns() + delay_ns, tag, conn().gen, static_cast<std::uint32_t>(timer), 0});
}

std::size_t LineRun::unsent_bytes(std::uint32_t tag) const {
  (void)tag;
  return uring::ClientLoop::unsent_bytes(loop_.conn(0));
}

std::int64_t LineRun::ok_delay_ns(std::uint32_t tag) {
  (void)tag;
  return to_ns(options_.ok_delay);
}

std::uint64_t LineRun::random(std::uint32_t tag) {
  (void)tag;
  return rng_();
}

// Lines about other clients' traffic, and error lines the hub keeps going after, concern not our X:
// the ok timeout still bounds the wait.
bool LineRun::keep_after(std::uint32_t tag, LineSurprise what, std::string_view line) {
  (void)tag, (void)what, (void)line;
  return true;
}

void LineRun::attempt_failed(std::uint32_t tag, const Error& why, std::optional<std::int64_t> backoff_ns) {
  (void)tag;
  if (backoff_ns && options_.on_retry) {
    options_.on_retry(LineRetry{session_.counts().attempts, why,
                                std::chrono::duration_cast<Ms>(std::chrono::nanoseconds(*backoff_ns))});
  }
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
