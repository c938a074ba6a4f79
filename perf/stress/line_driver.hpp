// LineDriver: --mode line. Each client is a core LineSession (the self-healing rules the C++ line client
// uses too): it connects at its start time, sends `message X`, answers every `message Y` with `ok Y`
// after --ok-delay and closes on its own `ok X`; no ok within --timeout or a lost connection: reconnect
// after a backoff and resend, up to --retries times. This file carries the sessions' requests to the
// engine and counts what the run reports.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "core/line_session.hpp"
#include "perf/stress/delay_spec.hpp"
#include "perf/stress/tally.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::stress {

struct LineSettings {
  DelaySpec ok_delay;
  std::int64_t timeout_ns = 0;
  unsigned retries = 0;
  std::int64_t ramp_ns = 0;
  std::string nonce;     // prefix of every X: oks left over from another run can never match
  std::string endpoint;  // the hub address(es), for failure notes
};

// Contract: lives on its engine's thread; clients [first, first + engine.size()) of the run.
class LineDriver final : public uring::ClientDriver, private LineSessionIo {
 public:
  LineDriver(uring::ClientLoop& engine, const LineSettings& settings, std::uint32_t first_client,
             Tally& tally, std::uint64_t seed);
  // Arms every client's start timer: uniform over [start_ns, start_ns + ramp).
  void schedule_starts(std::int64_t start_ns);
  // After the engine returned: clients that neither finished nor gave up count as failed.
  void finalize();

  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_drained(uring::ClientConn& conn) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  bool finished() const override { return settled_ == sessions_.size(); }

 private:
  // Timer kinds: kStart, then each LineTimer shifted by one.
  static constexpr std::uint32_t kStart = 0;

  void connect(std::uint32_t tag) override;
  void send(std::uint32_t tag, std::string_view bytes) override;
  void close(std::uint32_t tag) override;
  void arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) override;
  std::size_t unsent_bytes(std::uint32_t tag) const override;
  std::int64_t ok_delay_ns(std::uint32_t tag) override;
  std::uint64_t random(std::uint32_t tag) override;
  bool keep_after(std::uint32_t tag, LineSurprise what, std::string_view line) override;
  void settled(std::uint32_t tag) override;

  uring::ClientLoop& engine_;
  const LineSettings& settings_;
  const LineSessionConfig config_;
  const std::uint32_t first_client_;
  Tally& tally_;
  std::mt19937_64 rng_;
  std::vector<LineSession> sessions_;  // one per engine slot, same index
  std::size_t settled_ = 0;
};

}  // namespace ringhub::stress
