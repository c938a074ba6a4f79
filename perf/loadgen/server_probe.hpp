// What ringhub-perf reads about the server under test from /proc/PID: CPU seconds (user + system, all
// threads) and resident memory now and at its peak. Works for any server process on this machine.
#pragma once

#include <cstdint>
#include <optional>

namespace ringhub::perf {

struct ServerSample {
  double cpu_s = 0;             // utime + stime since the process started
  std::uint64_t rss_bytes = 0;  // VmRSS
  std::uint64_t hwm_bytes = 0;  // VmHWM: the peak RSS
};

// nullopt when pid <= 0 or the process cannot be read (gone, or another user's).
std::optional<ServerSample> sample_server(int pid);

}  // namespace ringhub::perf
