// ringhub-stress: the 100k-client harness for ringhub, one process on io_uring (see docs/stress.md).
//   ringhub-stress --mode line --clients 100000 --ramp 60 --ok-delay 0
//   ringhub-stress --mode relay --clients 500 --ramp 1 --senders 0.1 --max-size 262144
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>

#include "apps/cli_checks.hpp"
#include "perf/guarded_main.hpp"
#include "perf/stress/options.hpp"
#include "perf/stress/report.hpp"
#include "perf/stress/run.hpp"

namespace {

// 0: every check passed; 1: a check failed; 2: bad flags or set-up.
constexpr int kExitFailed = 1;
constexpr int kExitSetup = 2;

void block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread: the monitor takes them
  std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace

static int run(int argc, char** argv) {
  using namespace ringhub::stress;
  CLI::App app{"ringhub-stress: many clients on io_uring against one ringhub (loopback only)"};
  Options options;
  add_flags(app, options);
  if (const std::optional<int> exit_status = ringhub::cli::parse_command_line(app, argc, argv)) {
    return *exit_status;
  }
  auto plan = make_plan(options);
  if (!plan) {
    fmt::print(stderr, "ringhub-stress: {}\n", plan.error().message);
    return kExitSetup;
  }
  block_stop_signals();
  if (!plan->quiet) {
    fmt::print(stderr, "ringhub-stress: {} clients, {} threads, hub {}, {} source address(es), seed {}\n",
               plan->clients, plan->threads, plan->hub_text, plan->sources.size(), plan->seed);
  }
  RunOutcome outcome = run_stress(*plan);
  evaluate(*plan, outcome);
  print_summary(plan->json ? stderr : stdout, *plan, outcome);
  if (plan->json) {
    fmt::print("{}\n", to_json(*plan, outcome));
  }
  return outcome.failures.empty() ? EXIT_SUCCESS : kExitFailed;
}

int main(int argc, char** argv) {
  return ringhub::guarded_main("ringhub-stress", run, argc, argv);
}
