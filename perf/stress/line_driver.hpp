// LineDriver: --mode line, as a user of the client library's AsyncLineClient (each client a core
// LineSession: connect, `message X`, answer every `message Y` after --ok-delay, close on its own
// `ok X`; no ok within --timeout or a lost connection: reconnect after a backoff, up to --retries
// times). This file adds the ramp, a stricter reading of the hub's lines, and the run's tallies.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "clients/cpp/async_line_client.hpp"
#include "perf/stress/delay_spec.hpp"
#include "perf/stress/tally.hpp"

namespace ringhub::stress {

struct LineSettings {
  DelaySpec ok_delay;
  std::int64_t timeout_ns = 0;
  unsigned retries = 0;
  std::int64_t ramp_ns = 0;
  std::string nonce;     // prefix of every X: oks left over from another run can never match
  std::string endpoint;  // the hub address(es), for failure notes
};

// Contract: constructed anywhere; init() and everything after it on its engine's thread. Clients
// [first, first + options.clients) of the run.
class LineDriver final : private client::LineEvents {
 public:
  // `options`: where and how to connect; the session rules are filled in from `settings`.
  LineDriver(client::AsyncLineOptions options, const LineSettings& settings, std::uint32_t first_client,
             Tally& tally, std::uint64_t seed);
  Result<void> init();  // makes the ring, on the thread that will run it
  // Starts every client at a uniform time in [start_ns, start_ns + ramp) and runs until all settle,
  // or `deadline_ns` or *abort (clients still unfinished then fail).
  void run(std::int64_t start_ns, std::int64_t deadline_ns, const std::atomic<bool>& abort);
  // Null before init(); read by other threads for progress (its figures are atomics).
  const uring::ClientLoopStats* stats() const { return client_ ? &client_->stats() : nullptr; }

 private:
  std::int64_t ok_delay_ns(std::uint32_t client) override;
  bool keep_after(std::uint32_t client, LineSurprise what, std::string_view line) override;
  void on_attempt(std::uint32_t client, unsigned attempt) override;
  void on_connected(std::uint32_t client) override;
  void on_answered(std::uint32_t client) override;
  void on_closed(std::uint32_t client, const uring::CloseInfo& info) override;
  void on_settled(std::uint32_t client) override;

  client::AsyncLineOptions options_;
  const LineSettings& settings_;
  const std::uint32_t first_client_;
  Tally& tally_;
  std::mt19937_64 rng_;
  std::unique_ptr<client::AsyncLineClient> client_;
  std::vector<std::string> xs_;  // each client's X, made before the run starts
};

}  // namespace ringhub::stress
