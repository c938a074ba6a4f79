// What a run found, judged and told: the totals of every engine, what the hub's /metrics and /proc said,
// the pass/fail verdict with its reasons, the summary table for people and the JSON for machines.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "perf/stress/histogram.hpp"
#include "perf/stress/hub_metrics.hpp"
#include "perf/stress/options.hpp"
#include "perf/stress/relay_audit.hpp"
#include "perf/stress/tally.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::stress {

// Metric names the harness reads (core/prometheus.cpp writes them).
namespace metric {
inline const std::string kLineConnections = R"(ringhub_connections{protocol="line"})";
inline const std::string kRelayConnections = R"(ringhub_connections{protocol="relay"})";
inline const std::string kLinePending = "ringhub_line_pending_messages";
inline const std::string kOutboundQueued = "ringhub_outbound_queued_bytes";
inline const std::string kLineForwards = "ringhub_line_forwards_total";
inline const std::string kLineReforwards = "ringhub_line_reforwards_total";
inline const std::string kLineUnmatchedOks = "ringhub_line_unmatched_oks_total";
inline const std::string kDeliveries = "ringhub_deliveries_total";
inline const std::string kSlowConsumerCloses = "ringhub_slow_consumer_closes_total";
inline const std::string kServerFullRejects = "ringhub_server_full_rejects_total";
inline const std::string kCqOverflows = "ringhub_cq_overflows_total";
inline const std::string kBytesOut = "ringhub_bytes_out_total";
inline const std::string kBytesIn = "ringhub_bytes_in_total";
inline const std::string kReadPaused = "ringhub_read_paused_connections";
inline const std::string kMemoryInUse = "ringhub_memory_in_use_bytes";
inline const std::string kMemoryBudget = "ringhub_memory_budget_bytes";
inline const std::string kBudgetPauses = "ringhub_budget_pauses_total";
inline const std::string kFrameTimeouts = "ringhub_frame_timeouts_total";
inline const std::string kCopiedPrefix = R"(ringhub_copied_bytes_total{reason=")";
inline const char* const kCopyReasons[] = {"copy_out", "assembly", "batch", "reply"};
}  // namespace metric

// Every engine's Tally and uring::ClientLoopStats added up (plain numbers: read after the threads joined).
struct Totals {
  std::uint64_t started = 0, done = 0, failed = 0, retries = 0, reconnects = 0, timeouts = 0, drops = 0;
  std::uint64_t identified = 0, relays_sent = 0, verified = 0;
  std::uint64_t misrouted_oks = 0, duplicate_oks = 0, hub_errors = 0;
  std::uint64_t bad_deliveries = 0, missing_deliveries = 0, extra_deliveries = 0;
  std::uint64_t cq_overflows = 0, enobufs = 0, bind_failures = 0, connect_failures = 0;
  std::int64_t max_timer_lag_ns = 0;
  std::int64_t first_start_ns = INT64_MAX, last_start_ns = 0, last_close_ns = 0;
  LatencyHistogram latency;
  std::vector<std::string> failure_samples;

  void add(const Tally& tally);
  void add(const uring::ClientLoopStats& stats);
};

struct HubReport {
  bool metrics = false;  // /metrics was read at the start and the end
  MetricsSnapshot start;
  MetricsSnapshot end;
  // Relay: read when the harness decided to close (everything verified, or a stall), while every client
  // was still connected: what the hub still held for them then.
  std::optional<MetricsSnapshot> at_close;
  bool zero_state = false;
  std::string zero_detail;
  double peak_connections = 0;  // highest connection gauge seen while polling (once a second)
  std::optional<ProcessMemory> memory_start;
  std::optional<ProcessMemory> memory_end;
  std::optional<double> cpu_start;  // the hub's CPU seconds (--hub-pid)
  std::optional<double> cpu_end;
  double delta(const std::string& key) const { return end.value(key) - start.value(key); }
};

struct RunOutcome {
  bool ran = false;  // the engines ran: false when set-up failed (failures says why)
  Totals totals;
  HubReport hub;
  std::uint64_t relays_planned = 0;
  std::uint64_t deliveries_expected = 0;
  bool stalled = false;      // relay: deliveries stopped arriving before all were verified
  bool interrupted = false;  // SIGINT/SIGTERM
  std::int64_t run_start_ns = 0;
  std::int64_t run_end_ns = 0;
  std::uint64_t harness_peak_rss = 0;
  std::uint64_t harness_peak_open = 0;  // most connections open at once, sampled every 100 ms
  std::uint64_t bytes_expected = 0;     // relay: body bytes planned for delivery (size x fan-out)
  RelayAudit audit;                     // relay: which planned deliveries never arrived
  // Relay: times the run looked stalled but the kernel still held bytes for the clients in the hub's
  // sockets (TCP recovering), and the most it held then.
  std::uint64_t kernel_waits = 0;
  std::uint64_t kernel_wait_peak_bytes = 0;
  // This network namespace's TCP (shared with anything else running here): drops and timer expiries
  // during the run, and the most memory all TCP sockets held, sampled once a second.
  KernelTcpCounters tcp_start;
  KernelTcpCounters tcp_end;
  std::optional<KernelTcpMemory> tcp_peak;
  double harness_cpu_s = 0;
  std::vector<std::string> failures;  // why the run failed; empty: it passed
};

void evaluate(const RunPlan& plan, RunOutcome& outcome);
void print_summary(std::FILE* out, const RunPlan& plan, const RunOutcome& outcome);
std::string to_json(const RunPlan& plan, const RunOutcome& outcome);

}  // namespace ringhub::stress
