// ringhub-perf: drives ringhub, NATS or Redis with the same pub/sub workload and prints what it measured
// (see docs/perf/README.md). Exit 0: measured and verified; 1: the run failed or a check did; 2: usage.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>

#include "apps/cli_checks.hpp"
#include "perf/guarded_main.hpp"
#include "perf/loadgen/perf_options.hpp"
#include "perf/loadgen/perf_report.hpp"
#include "perf/loadgen/perf_run.hpp"

namespace {

constexpr int kExitFailed = 1;
using ringhub::cli::kExitUsage;

std::atomic<bool> g_abort{false};

void on_stop_signal(int) {
  g_abort.store(true);
}

void emit(bool json, const std::string& json_text, const std::string& summary) {
  if (json) {
    fmt::print(stderr, "{}", summary);
    fmt::print("{}\n", json_text);
  } else {
    fmt::print("{}", summary);
  }
}

}  // namespace

static int run(int argc, char** argv) {
  using namespace ringhub::perf;
  CLI::App app{"ringhub-perf: one pub/sub workload against ringhub, NATS or Redis (loopback only)"};
  PerfOptions options;
  add_flags(app, options);
  if (const std::optional<int> exit_status = ringhub::cli::parse_command_line(app, argc, argv)) {
    return *exit_status;
  }
  if (auto finished = finish_options(options); !finished) {
    fmt::print(stderr, "ringhub-perf: {}\n", finished.error().message);
    return kExitUsage;
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  if (options.idle_conns > 0) {
    auto result = run_idle(options, g_abort);
    if (!result) {
      fmt::print(stderr, "ringhub-perf: {}\n", result.error().message);
      return kExitFailed;
    }
    emit(options.json, idle_json(options, *result), idle_summary(options, *result));
    return result->errors.empty() || result->opened > 0 ? 0 : kExitFailed;
  }
  auto result = run_bench(options, g_abort);
  if (!result) {
    fmt::print(stderr, "ringhub-perf: {}\n", result.error().message);
    return kExitFailed;
  }
  emit(options.json, bench_json(options, *result), bench_summary(options, *result));
  return result->ok() ? 0 : kExitFailed;
}

int main(int argc, char** argv) {
  return ringhub::guarded_main("ringhub-perf", run, argc, argv);
}
