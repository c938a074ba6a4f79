// The harness's flags (CLI11) and the RunPlan made from them: addresses parsed and checked to be
// loopback, threads and direct-descriptor tables sized, source binding probed on this kernel.
#pragma once

#include <netinet/in.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "perf/stress/delay_spec.hpp"

namespace ringhub::stress {

enum class Mode : std::uint8_t { kLine, kRelay };

struct Options {
  std::string mode = "line";
  std::uint32_t clients = 100'000;
  double ramp_s = 60;
  std::string ok_delay = "0";
  std::uint32_t timeout_ms = 10'000;
  unsigned retries = 5;
  std::string hub;  // default: 127.0.0.1:7401 (line) or 127.0.0.1:7400 (relay)
  std::string admin = "127.0.0.1:7402";
  unsigned threads = 0;  // 0: enough rings for <= kClientsPerRing sockets each, at least 2
  bool json = false;
  std::uint64_t seed = 0;  // 0: pick one (printed, so a run can be repeated)
  double deadline_s = 0;   // 0: ramp + kDefaultDeadlineSlack
  int sources = -1;        // -1: auto; 0: do not bind a source address
  double senders = 0.01;
  unsigned relays = 4;
  std::uint32_t max_size = 1U << 20;
  unsigned max_fanout = 255;
  int hub_pid = 0;
  bool quiet = false;
  std::int64_t max_in_flight = -1;  // relay; -1: from this host's tcp_mem; 0: no limit
};

void add_flags(CLI::App& app, Options& options);

struct RunPlan {
  Mode mode = Mode::kLine;
  std::uint32_t clients = 0;
  unsigned threads = 0;
  unsigned table_size = 0;  // direct descriptors per engine ring
  unsigned buffer_count = 0;
  std::uint32_t buffer_size = 0;
  std::vector<sockaddr_in> hubs;
  std::vector<sockaddr_in> sources;
  bool admin_enabled = true;
  sockaddr_in admin{};
  std::int64_t ramp_ns = 0;
  std::int64_t timeout_ns = 0;
  std::int64_t deadline_ns = 0;  // from the start of the run
  DelaySpec ok_delay;
  unsigned retries = 0;
  std::uint64_t seed = 0;
  std::uint32_t senders = 0;  // relay: how many clients send
  unsigned relays = 0;
  std::uint32_t max_size = 0;
  unsigned max_fanout = 0;
  std::uint64_t max_in_flight = 0;  // relay: delivery bytes started and not yet received; 0: no limit
  int hub_pid = 0;
  bool json = false;
  bool quiet = false;
  std::string hub_text;
  std::string admin_text;
  std::vector<std::string> notes;  // decisions worth a line in the report (fallbacks, caps)
};

Result<RunPlan> make_plan(const Options& options);
// Relay: the body bytes the plan will deliver on average (senders x relays x mean size x mean fan-out),
// and the seconds the default deadline allows for them beyond the ramp and its slack.
double expected_relay_bytes(const RunPlan& plan);
double delivery_allowance_s(const RunPlan& plan);

std::string address_text(const sockaddr_in& address);

}  // namespace ringhub::stress
