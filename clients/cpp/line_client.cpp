// run_line_client: core's LineSession (the self-healing rules) on the io_uring engine, one connection
// at a time in a uring::ClientLoop of one slot; its deadlines are the loop's timers.
// See clients/cpp/line_client.hpp for the contract.
#include "clients/cpp/line_client.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "clients/cpp/async_line_client.hpp"
#include "clients/cpp/hub_address.hpp"
#include "core/line_protocol.hpp"
#include "core/line_session.hpp"

namespace ringhub::client {

namespace {

using Ms = std::chrono::milliseconds;

// Longest X we send: `message X` must fit one hub line, or the hub answers `error line too long`.
constexpr std::size_t kMaxMessageBytes = kDefaultMaxLineBytes - kMessagePrefix.size();

// Receive memory: provided buffers the kernel fills as lines arrive (a long hub line spans several;
// the splitter gathers it). When all are in use reading pauses until the loop has handled them.
constexpr unsigned kRecvBuffers = 8;
constexpr std::uint32_t kRecvBufferSize = std::uint32_t{16} << 10;

}  // namespace

Result<void> check_line_message(std::string_view x) {
  const auto invalid = [](std::string message) { return system_error(EINVAL, std::move(message)); };
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
  return {};
}

namespace {

Result<void> validate(const LineClientOptions& o) {
  const auto invalid = [](std::string message) { return system_error(EINVAL, std::move(message)); };
  if (Result<void> message = check_line_message(o.message); !message) {
    return message;
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

AsyncLineOptions client_options(const LineClientOptions& o, std::vector<uring::SocketAddress> hubs) {
  AsyncLineOptions options;
  options.hubs = std::move(hubs);
  options.clients = 1;
  options.session.ok_timeout_ns = to_ns(o.timeout);
  options.session.max_attempts = o.max_attempts;
  options.session.backoff = RetryBackoff{to_ns(o.backoff_initial), to_ns(o.backoff_max)};
  options.session.endpoint = endpoint_text(o.host, o.port);
  options.connect_timeout_ns = to_ns(o.timeout);
  options.recv_buffers = kRecvBuffers;
  options.recv_buffer_size = kRecvBufferSize;
  options.sq_entries = 32;
  options.cq_entries = 64;
  return options;
}

// One client of an AsyncLineClient, run to its end on this thread.
class LineRun final : private LineEvents {
 public:
  LineRun(const LineClientOptions& options, const std::atomic<bool>* cancel)
      : options_(options), cancel_(cancel) {}
  Result<LineOutcome> run(std::vector<uring::SocketAddress> hubs);

 private:
  std::int64_t ok_delay_ns(std::uint32_t client) override {
    (void)client;
    return to_ns(options_.ok_delay);
  }
  void on_attempt_failed(std::uint32_t client, const Error& why,
                         std::optional<std::int64_t> backoff_ns) override;
  void on_settled(std::uint32_t client) override { (void)client; }
  LineOutcome outcome(const LineSession& session) const;

  const LineClientOptions& options_;
  const std::atomic<bool>* cancel_;
  unsigned attempts_ = 0;
};

Result<LineOutcome> LineRun::run(std::vector<uring::SocketAddress> hubs) {
  Result<std::unique_ptr<AsyncLineClient>> made =
      AsyncLineClient::create(client_options(options_, std::move(hubs)), *this);
  if (!made) {
    return made.error();
  }
  AsyncLineClient& client = **made;
  client.start(0, options_.message);
  const LineSession& session = *client.session(0);
  // The loop wakes at least every kLineCancelCheck (50 ms) to look at the cancel flag.
  while (!client.run_until(uring::now_ns() + to_ns(kLineCancelCheck), [&] { return session.settled(); })) {
    if (cancelled(cancel_)) {
      client.give_up(0, system_error(ECANCELED, fmt::format("cancelled before '{}' was answered ({} made)",
                                                            shown_line_payload(options_.message),
                                                            attempts_text(session.counts().attempts))));
      client.run_until(uring::now_ns() + to_ns(kLineCancelCheck), [&] { return client.idle(0); });
    }
  }
  if (session.state() == LineSession::State::kDone) {
    return outcome(session);
  }
  return *session.failure();
}

LineOutcome LineRun::outcome(const LineSession& session) const {
  const LineCounts& counts = session.counts();
  LineOutcome outcome;
  outcome.attempts = counts.attempts;
  outcome.reconnects = counts.reconnects;
  outcome.timeouts = counts.ok_timeouts + counts.connect_timeouts;
  outcome.oks_sent = counts.oks_sent;
  outcome.ignored_lines = counts.ignored_lines;
  outcome.latency = std::chrono::nanoseconds(session.latency_ns());
  return outcome;
}

void LineRun::on_attempt_failed(std::uint32_t client, const Error& why,
                                std::optional<std::int64_t> backoff_ns) {
  (void)client;
  ++attempts_;
  if (backoff_ns && options_.on_retry) {
    options_.on_retry(
        LineRetry{attempts_, why, std::chrono::duration_cast<Ms>(std::chrono::nanoseconds(*backoff_ns))});
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
  LineRun run(options, cancel);
  return run.run(std::move(*hubs));
}

}  // namespace ringhub::client
