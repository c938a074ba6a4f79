// ringhub-perf's output: a human summary and the JSON object perf/compare reads (its fields are listed
// in docs/perf/README.md).
#pragma once

#include <string>

#include "perf/loadgen/perf_options.hpp"
#include "perf/loadgen/perf_run.hpp"

namespace ringhub::perf {

std::string bench_json(const PerfOptions& options, const BenchResult& result);
std::string bench_summary(const PerfOptions& options, const BenchResult& result);
std::string idle_json(const PerfOptions& options, const IdleResult& result);
std::string idle_summary(const PerfOptions& options, const IdleResult& result);

}  // namespace ringhub::perf
