// LineDriver: --mode line. Each client connects at its start time, sends `message X`, answers every
// `message Y` with `ok Y` after --ok-delay and closes on its own `ok X`; no ok within --timeout or a lost
// connection: reconnect after a backoff and resend, up to --retries times.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/line_protocol.hpp"
#include "perf/stress/delay_spec.hpp"
#include "perf/stress/tally.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::stress {

struct LineSettings {
  DelaySpec ok_delay;
  std::int64_t timeout_ns = 0;
  unsigned retries = 0;
  std::int64_t ramp_ns = 0;
  std::string nonce;  // prefix of every X: oks left over from another run can never match
};

// Contract: lives on its engine's thread; clients [first, first + engine.size()) of the run.
class LineDriver final : public uring::ClientDriver {
 public:
  LineDriver(uring::ClientLoop& engine, const LineSettings& settings, std::uint32_t first_client,
             Tally& tally, std::uint64_t seed);
  // Arms every client's start timer: uniform over [start_ns, start_ns + ramp).
  void schedule_starts(std::int64_t start_ns);
  // After the engine returned: clients that neither finished nor gave up count as failed.
  void finalize();

  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  bool finished() const override { return settled_ == clients_.size(); }

 private:
  enum class State : std::uint8_t { kWaiting, kConnecting, kOpen, kBackoff, kDone, kFailed };
  enum TimerKind : std::uint32_t { kStart, kOkTimeout, kOkDelay, kRetry };

  struct Client {
    State state = State::kWaiting;
    bool got_ok = false;
    bool timed_out = false;  // this connection's wait for `ok X` ran out
    std::uint16_t attempts = 0;
    std::int64_t sent_ns = 0;  // when this connection's `message X` was queued
    std::unique_ptr<LineSplitter> lines;
  };

  std::string x_of(std::uint32_t index) const;
  bool on_line(uring::ClientConn& conn, std::string_view line);
  void on_own_ok(uring::ClientConn& conn);
  void answer(uring::ClientConn& conn, std::string_view y);
  void send_ok(uring::ClientConn& conn, std::string_view y);
  void start_attempt(uring::ClientConn& conn);
  void retry_or_give_up(uring::ClientConn& conn, const uring::CloseInfo& info);
  void settle(Client& client, State state);
  std::uint32_t stash(std::string_view y);
  std::string unstash(std::uint32_t slot);

  uring::ClientLoop& engine_;
  const LineSettings& settings_;
  const std::uint32_t first_client_;
  Tally& tally_;
  std::mt19937_64 rng_;
  std::vector<Client> clients_;
  std::size_t settled_ = 0;
  std::vector<std::string> delayed_;       // Y of each delayed ok waiting for its timer
  std::vector<std::uint32_t> free_slots_;  // free entries of delayed_
  std::string scratch_;
};

}  // namespace ringhub::stress
