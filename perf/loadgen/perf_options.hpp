// ringhub-perf's command line: what to drive (target, address), the workload (publishers, fan-out, size),
// the mode (saturating, fixed rate, or idle connection scale) and how to report it.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "core/result.hpp"
#include "perf/loadgen/wire.hpp"

namespace CLI {
class App;
}

namespace ringhub::perf {

struct PerfOptions {
  std::string target_text = "ringhub";
  std::string addr = "127.0.0.1:7400";
  unsigned publishers = 4;
  unsigned fanout = 1;
  std::size_t size = 64;
  double duration_s = 3;
  double warmup_s = 0.5;
  double rate = 0;      // published messages/s over all publishers; 0: saturating
  unsigned window = 0;  // 0: min(256, window_bytes / (size x fanout)), at least 1
  std::size_t window_bytes = std::size_t{4} << 20;
  int server_pid = 0;
  bool checksum = false;
  bool json = false;
  std::uint32_t idle_conns = 0;
  double stall_s = 5;
  double drain_s = 10;
  std::uint32_t buffer_kib = 64;

  // Filled by finish_options.
  Target target = Target::kRinghub;
  sockaddr_in address{};
};

void add_flags(CLI::App& app, PerfOptions& options);
// Checks the flags together and derives target, address and window; the error is for the user.
Result<void> finish_options(PerfOptions& options);

}  // namespace ringhub::perf
