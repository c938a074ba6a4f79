// run_stress: one whole harness run. Starts an engine thread per ring with its mode's driver, watches
// them (live progress once a second, the relay barrier and stall check, the deadline, Ctrl-C), joins
// them, then waits for the hub's /metrics to show zero state.
#pragma once

#include "perf/stress/options.hpp"
#include "perf/stress/report.hpp"

namespace ringhub::stress {

// Returns what happened; evaluate() turns it into a verdict. The calling thread must have blocked SIGINT
// and SIGTERM (the engines inherit the mask; the monitor takes them with sigtimedwait).
RunOutcome run_stress(const RunPlan& plan);

}  // namespace ringhub::stress
