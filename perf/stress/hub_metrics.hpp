// What the harness reads about the hub from outside: GET /metrics from the admin port (one blocking
// HTTP/1.1 request with a bounded wait) parsed into sample values, and the hub process's memory from
// /proc/<pid>/status.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/result.hpp"

namespace ringhub::stress {

// Samples keyed as they appear on the wire, labels included: `ringhub_connections{protocol="line"}`.
class MetricsSnapshot {
 public:
  static MetricsSnapshot parse(const std::string& body);
  // The sample's value, or 0 when the hub does not export it.
  double value(const std::string& key) const;

 private:
  std::map<std::string, double> values_;
};

// Each fetch connects, sends one GET and reads to EOF; connect, send and every read are bounded by
// `timeout`, so a hung hub cannot stall the harness.
class MetricsClient {
 public:
  MetricsClient(const sockaddr_in& admin, std::chrono::milliseconds timeout)
      : admin_(admin), timeout_(timeout) {}
  Result<MetricsSnapshot> fetch() const;

 private:
  Result<std::string> get(const char* path) const;
  sockaddr_in admin_;
  std::chrono::milliseconds timeout_;
};

// A process's memory from /proc/<pid>/status, in bytes: VmHWM (peak resident) and VmRSS.
struct ProcessMemory {
  std::uint64_t peak_rss = 0;
  std::uint64_t rss = 0;
};
std::optional<ProcessMemory> read_process_memory(int pid);

}  // namespace ringhub::stress
