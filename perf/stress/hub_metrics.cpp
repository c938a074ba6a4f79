// Blocking HTTP GET of the hub's /metrics, Prometheus text parsing and /proc/<pid>/status reading; see
// hub_metrics.hpp.
#include "perf/stress/hub_metrics.hpp"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "transport/unique_fd.hpp"

namespace ringhub::stress {

namespace {

// A /metrics page is a few KiB; anything past this is not our hub.
constexpr std::size_t kMaxReplyBytes = std::size_t{4} << 20;

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

}  // namespace

Result<std::string> MetricsClient::get(const char* path) const {
  UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) {
    return errno_error("socket");
  }
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count();
  const timeval tv{static_cast<time_t>(micros / 1'000'000), static_cast<suseconds_t>(micros % 1'000'000)};
  setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
  if (connect(socket.get(), reinterpret_cast<const sockaddr*>(&admin_), sizeof admin_) != 0) {
    return errno_error("connect to the admin port");
  }
  if (!send_all(socket.get(),
                fmt::format("GET {} HTTP/1.1\r\nHost: ringhub\r\nConnection: close\r\n\r\n", path))) {
    return errno_error("send the request");
  }
  std::string reply;
  char chunk[16384];
  while (reply.size() < kMaxReplyBytes) {
    const ssize_t got = recv(socket.get(), chunk, sizeof chunk, 0);
    if (got == 0) {
      break;
    }
    if (got < 0 && errno == EINTR) {
      continue;  // a signal arrived (seen under TSan in stress_smoke): not the hub's failure
    }
    if (got < 0) {
      return errno_error("read the reply");
    }
    reply.append(chunk, static_cast<std::size_t>(got));
  }
  if (!reply.starts_with("HTTP/1.1 200")) {
    return make_error(fmt::format("GET {} answered: {}", path, reply.substr(0, reply.find('\r'))));
  }
  const std::size_t body = reply.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : reply.substr(body + 4);
}

Result<MetricsSnapshot> MetricsClient::fetch() const {
  auto body = get("/metrics");
  if (!body) {
    return body.error();
  }
  return MetricsSnapshot::parse(*body);
}

MetricsSnapshot MetricsSnapshot::parse(const std::string& body) {
  MetricsSnapshot snapshot;
  std::istringstream lines(body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const std::size_t space = line.rfind(' ');
    if (space == std::string::npos) {
      continue;
    }
    double value = 0;
    const auto [end, ec] = std::from_chars(line.data() + space + 1, line.data() + line.size(), value);
    if (ec == std::errc()) {
      snapshot.values_[line.substr(0, space)] = value;
    }
  }
  return snapshot;
}

double MetricsSnapshot::value(const std::string& key) const {
  const auto it = values_.find(key);
  return it == values_.end() ? 0.0 : it->second;
}

std::optional<ProcessMemory> read_process_memory(int pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  if (!status) {
    return std::nullopt;
  }
  ProcessMemory memory;
  std::string key;
  while (status >> key) {
    std::uint64_t kib = 0;
    if (key == "VmHWM:" && status >> kib) {
      memory.peak_rss = kib * 1024;
    } else if (key == "VmRSS:" && status >> kib) {
      memory.rss = kib * 1024;
    }
    status.ignore(4096, '\n');
  }
  return memory;
}

std::uint64_t sum_send_queues(std::string_view proc_net_tcp, std::span<const std::uint16_t> local_ports) {
  // "  sl  local_address rem_address   st tx_queue:rx_queue ..." then one socket per line:
  // "   0: 0100007F:1DB2 0B00007F:9280 01 0003A000:00000000 ...", numbers in hex.
  constexpr std::string_view kListen = "0A";
  std::uint64_t total = 0;
  std::size_t start = proc_net_tcp.find('\n');  // skip the heading
  while (start != std::string_view::npos && start + 1 < proc_net_tcp.size()) {
    const std::size_t end = proc_net_tcp.find('\n', start + 1);
    std::istringstream line(std::string(proc_net_tcp.substr(start + 1, end - start - 1)));
    start = end;
    std::string slot, local, remote, state, queues;
    if (!(line >> slot >> local >> remote >> state >> queues) || state == kListen) {
      continue;
    }
    const std::size_t colon = local.find(':');
    const std::size_t split = queues.find(':');
    if (colon == std::string::npos || split == std::string::npos) {
      continue;
    }
    const auto port = static_cast<std::uint16_t>(std::stoul(local.substr(colon + 1), nullptr, 16));
    if (std::find(local_ports.begin(), local_ports.end(), port) != local_ports.end()) {
      total += std::stoull(queues.substr(0, split), nullptr, 16);
    }
  }
  return total;
}

std::optional<std::uint64_t> kernel_send_queue_bytes(std::span<const std::uint16_t> local_ports) {
  std::ifstream file("/proc/net/tcp");
  if (!file) {
    return std::nullopt;
  }
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  return sum_send_queues(text, local_ports);
}

KernelTcpCounters read_kernel_tcp_counters() {
  // Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: value1 value2 ...".
  std::ifstream file("/proc/net/netstat");
  std::string names;
  std::string values;
  KernelTcpCounters counters;
  while (std::getline(file, names) && std::getline(file, values)) {
    if (names.rfind("TcpExt:", 0) != 0) {
      continue;
    }
    std::istringstream n(names);
    std::istringstream v(values);
    std::string name;
    std::string value;
    while (n >> name && v >> value) {
      if (name == "TCPRcvQDrop") {
        counters.receive_queue_drops = std::stoull(value);
      } else if (name == "TCPTimeouts") {
        counters.timeouts = std::stoull(value);
      }
    }
  }
  return counters;
}

std::optional<KernelTcpMemory> read_kernel_tcp_memory() {
  std::ifstream limits("/proc/sys/net/ipv4/tcp_mem");
  std::ifstream sockstat("/proc/net/sockstat");
  KernelTcpMemory memory;
  std::uint64_t low = 0;
  if (!(limits >> low >> memory.pressure_pages >> memory.limit_pages) || !sockstat) {
    return std::nullopt;
  }
  std::string word;
  bool in_tcp = false;
  while (sockstat >> word) {  // "TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 266"
    if (word == "TCP:") {
      in_tcp = true;
    } else if (in_tcp && word == "mem" && sockstat >> memory.pages) {
      return memory;
    } else if (word.back() == ':') {
      in_tcp = false;
    }
  }
  return std::nullopt;
}

}  // namespace ringhub::stress
