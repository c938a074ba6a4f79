// Tally: what one engine thread counts about its clients. The atomics feed the live progress line (the
// owner writes, the main thread reads, both relaxed); the rest is read only after the thread has joined.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "perf/stress/histogram.hpp"

namespace ringhub::stress {

// Failure descriptions kept per engine: enough to see what went wrong without flooding the report.
inline constexpr std::size_t kMaxFailureSamples = 5;

struct Tally {
  // --- live (relaxed atomics)
  alignas(64) std::atomic<std::uint64_t> started{0};  // clients that made their first attempt
  std::atomic<std::uint64_t> in_flight{0};            // line: `message X` sent, `ok X` not yet back
  std::atomic<std::uint64_t> done{0};                 // finished through the protocol
  std::atomic<std::uint64_t> failed{0};               // gave up (retry budget, deadline, corruption)
  std::atomic<std::uint64_t> retries{0};              // attempts after a failed one
  std::atomic<std::uint64_t> reconnects{0};           // connections made after an earlier one was lost
  std::atomic<std::uint64_t> timeouts{0};             // waits for `ok X` that ran out
  std::atomic<std::uint64_t> drops{0};                // connections the hub or the network ended first
  std::atomic<std::uint64_t> identified{0};           // relay: IDENTITY answered
  std::atomic<std::uint64_t> relays_sent{0};          // relay: RELAY frames fully written
  std::atomic<std::uint64_t> verified{0};             // relay: deliveries checked byte for byte

  // --- after join
  LatencyHistogram latency;
  std::int64_t first_start_ns = std::numeric_limits<std::int64_t>::max();
  std::int64_t last_start_ns = 0;
  std::int64_t last_close_ns = 0;
  std::uint64_t misrouted_oks = 0;   // line: `ok Z` for a Z this client never sent
  std::uint64_t duplicate_oks = 0;   // line: a second `ok X`
  std::uint64_t hub_errors = 0;      // `error ...` lines or ERROR frames from the hub
  std::uint64_t bad_deliveries = 0;  // relay: corrupt, duplicated, reordered or misattributed
  std::uint64_t missing_deliveries = 0;
  std::uint64_t extra_deliveries = 0;
  std::vector<std::string> failure_samples;

  void note_failure(std::string text) {
    if (failure_samples.size() < kMaxFailureSamples) {
      failure_samples.push_back(std::move(text));
    }
  }
  void note_start(std::int64_t now) {
    first_start_ns = std::min(first_start_ns, now);
    last_start_ns = std::max(last_start_ns, now);
    started.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace ringhub::stress
