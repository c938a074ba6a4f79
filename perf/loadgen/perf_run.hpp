// The two ways ringhub-perf runs: a publish/deliver measurement on one engine thread (the load generator
// is meant to be pinned to its own core), and the idle connection-scale run over as many engines as the
// direct-descriptor tables need.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "perf/loadgen/bench_driver.hpp"
#include "perf/loadgen/perf_options.hpp"

namespace ringhub::perf {

Result<BenchResult> run_bench(const PerfOptions& options, const std::atomic<bool>& abort);

struct IdleResult {
  std::uint32_t requested = 0;
  std::uint64_t opened = 0;  // greeting answered
  std::uint64_t failed = 0;
  double seconds_to_open = 0;  // first connect to the last confirmation
  std::optional<ServerSample> before;
  std::optional<ServerSample> after;  // all open, settled
  std::vector<std::string> errors;
  bool complete() const { return opened == requested; }
};

Result<IdleResult> run_idle(const PerfOptions& options, const std::atomic<bool>& abort);

}  // namespace ringhub::perf
