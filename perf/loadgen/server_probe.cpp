// sample_server: parses /proc/PID/stat (fields 14 and 15, in clock ticks) and /proc/PID/status (VmRSS,
// VmHWM, in kB). Plain file reads: ringhub-perf calls this a few times per run, never per message.
#include "perf/loadgen/server_probe.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace ringhub::perf {

namespace {

std::optional<double> read_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) {
    return std::nullopt;
  }
  // The command name (field 2) may hold spaces: count fields from the last ')'.
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(text.substr(close + 2));
  std::string skip;
  for (int field = 3; field < 14; ++field) {
    fields >> skip;
  }
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  if (!(fields >> utime >> stime)) {
    return std::nullopt;
  }
  const long ticks = sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100);
}

bool read_memory(int pid, ServerSample& sample) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t kb = 0;
    fields >> key >> kb;
    if (key == "VmRSS:") {
      sample.rss_bytes = kb * 1024;
      found = true;
    } else if (key == "VmHWM:") {
      sample.hwm_bytes = kb * 1024;
    }
  }
  return found;
}

}  // namespace

std::optional<ServerSample> sample_server(int pid) {
  if (pid <= 0) {
    return std::nullopt;
  }
  ServerSample sample;
  const std::optional<double> cpu = read_cpu_seconds(pid);
  if (!cpu || !read_memory(pid, sample)) {
    return std::nullopt;
  }
  sample.cpu_s = *cpu;
  return sample;
}

}  // namespace ringhub::perf
