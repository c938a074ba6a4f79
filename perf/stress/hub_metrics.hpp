// What the harness reads about the hub from outside: GET /metrics from the admin port (one blocking
// HTTP/1.1 request with a bounded wait) parsed into sample values, and the hub process's memory from
// /proc/<pid>/status.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

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
// Bytes the kernel holds in the send queues of TCP sockets bound to one of `local_ports` (written by
// their owner, not yet acknowledged by the peer), summed over a /proc/net/tcp text; listening sockets
// are skipped. For the hub's ports on this host: what TCP has yet to deliver to the clients.
std::uint64_t sum_send_queues(std::string_view proc_net_tcp, std::span<const std::uint16_t> local_ports);
// The same, read from this network namespace's /proc/net/tcp; nullopt when it cannot be read.
std::optional<std::uint64_t> kernel_send_queue_bytes(std::span<const std::uint16_t> local_ports);

// Kernel TCP counters of this network namespace (/proc/net/netstat, TcpExt) that tell whether TCP
// dropped segments for lack of memory and recovered by timers; 0 when unreadable.
struct KernelTcpCounters {
  std::uint64_t receive_queue_drops = 0;  // TCPRcvQDrop: a segment dropped, the socket over its memory
  std::uint64_t timeouts = 0;             // TCPTimeouts: retransmission timer expiries
};
KernelTcpCounters read_kernel_tcp_counters();
// Pages of memory all TCP sockets hold now (/proc/net/sockstat) and the limits tcp_mem sets.
struct KernelTcpMemory {
  std::uint64_t pages = 0;
  std::uint64_t pressure_pages = 0;  // tcp_mem[1]: above it the kernel squeezes every socket
  std::uint64_t limit_pages = 0;     // tcp_mem[2]
};
std::optional<KernelTcpMemory> read_kernel_tcp_memory();

}  // namespace ringhub::stress
