// Flags -> RunPlan: parsing, loopback checks, sizing and the IORING_OP_BIND probe; see options.hpp.
#include "perf/stress/options.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "perf/stress/hub_metrics.hpp"
#include "perf/stress/payload.hpp"
#include "transport/uring/ring.hpp"
#include "transport/uring/uring_compat.hpp"

namespace ringhub::stress {

namespace {

// Sockets per engine ring by default: under the 20000 open-file limit that caps a direct-descriptor
// table, with room for sockets still closing while their replacements open.
constexpr std::uint32_t kClientsPerRing = 18'000;
// Table slots beyond an engine's clients: sockets whose close has not completed yet.
constexpr unsigned kTableSlack = 256;
// Clients per source address by default: a fifth of the ephemeral range, so TIME_WAIT leftovers of an
// earlier run never exhaust a source.
constexpr std::uint32_t kClientsPerSource = 5'000;
// Source addresses go 127.0.0.1 .. 127.0.0.kMaxSources.
constexpr int kMaxSources = 250;
// Without source binding, one hub address serves at most this share of the ephemeral port range.
constexpr double kPortRangeShare = 0.9;
// The default deadline: the ramp plus this much for the last clients, retries and closes.
constexpr double kDefaultDeadlineSlack = 120.0;
// Relay: the delivery bytes in flight at most, by default a third of the TCP memory at which this host's
// kernel enters memory pressure (tcp_mem[1]): a byte in flight is held once or twice (the hub's send
// queue until acknowledged, the receiver's queue until read) with skb overhead on top. Past that level,
// with 200k loopback sockets, each socket's fair share is a few KB: the kernel drops segments and the
// last deliveries wait minutes on TCP's loss recovery (docs/stress.md).
constexpr std::uint64_t kTcpPageBytes = 4096;
constexpr std::uint64_t kInFlightShareOfTcpPressure = 3;
constexpr std::uint64_t kFallbackMaxInFlight = std::uint64_t{256} << 20;
// Relay mode's default deadline adds the time to deliver the plan's bytes at this rate, well under the
// slowest seen on this shared 2-core box (the open-loop 100k runs averaged 270 MB/s with TCP recovering
// from drops, the windowed ones 600 MB/s to 1.2 GB/s): the deadline must not end a run still delivering.
constexpr double kSlowestDeliveryBytesPerSecond = 64.0 * 1024 * 1024;
// Receive buffers per engine: line mode reads short lines, relay mode up to 1 MiB bodies.
constexpr unsigned kLineBuffers = 4096;
constexpr std::uint32_t kLineBufferSize = 2048;
constexpr unsigned kRelayBuffers = 1024;
constexpr std::uint32_t kRelayBufferSize = 32768;

Result<in_addr_t> parse_ipv4(const std::string& text) {
  in_addr address{};
  if (inet_pton(AF_INET, text.c_str(), &address) != 1) {
    return make_error(fmt::format("'{}' is not an IPv4 address", text));
  }
  if ((ntohl(address.s_addr) >> 24) != 127) {
    return make_error(
        fmt::format("{} is not a loopback address: the harness runs on 127.0.0.0/8 only", text));
  }
  return address.s_addr;
}

// "127.0.0.1:7401" or "127.0.0.1-8:7401" (a range of the last octet).
Result<std::vector<sockaddr_in>> parse_endpoints(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return make_error(fmt::format("'{}' is not HOST:PORT", text));
  }
  const int port = std::atoi(text.c_str() + colon + 1);
  if (port <= 0 || port > 65535) {
    return make_error(fmt::format("'{}' has no valid port", text));
  }
  std::string host = text.substr(0, colon);
  int last = -1;
  if (const std::size_t dash = host.find('-'); dash != std::string::npos) {
    last = std::atoi(host.c_str() + dash + 1);
    host.resize(dash);
  }
  auto first = parse_ipv4(host);
  if (!first) {
    return first.error();
  }
  const std::uint32_t base = ntohl(*first);
  const int from = static_cast<int>(base & 0xFF);
  if (last < 0) {
    last = from;
  }
  if (last < from || last > 254) {
    return make_error(fmt::format("'{}': the range must run upwards and end by .254", text));
  }
  std::vector<sockaddr_in> out;
  for (int octet = from; octet <= last; ++octet) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl((base & ~0xFFU) | static_cast<std::uint32_t>(octet));
    out.push_back(address);
  }
  return out;
}

std::uint32_t ephemeral_ports() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  std::uint32_t low = 32768;
  std::uint32_t high = 60999;
  range >> low >> high;
  return high >= low ? high - low + 1 : 28232;
}

bool kernel_has_bind_op() {
  io_uring ring{};
  if (io_uring_queue_init(4, &ring, 0) < 0) {
    return false;
  }
  const bool supported = uring_compat::opcode_supported(&ring, uring_compat::kOpBind);
  io_uring_queue_exit(&ring);
  return supported;
}

Result<void> plan_addresses(const Options& o, RunPlan& plan) {
  plan.hub_text = o.hub.empty() ? (plan.mode == Mode::kLine ? "127.0.0.1:7401" : "127.0.0.1:7400") : o.hub;
  auto hubs = parse_endpoints(plan.hub_text);
  if (!hubs) {
    return hubs.error();
  }
  plan.hubs = std::move(*hubs);
  plan.admin_text = o.admin;
  plan.admin_enabled = o.admin != "off";
  if (plan.admin_enabled) {
    auto admin = parse_endpoints(o.admin);
    if (!admin) {
      return admin.error();
    }
    plan.admin = admin->front();
  }
  return {};
}

void plan_sources(const Options& o, RunPlan& plan) {
  int count = o.sources;
  if (count < 0) {
    count = static_cast<int>(std::clamp<std::uint32_t>(
        (plan.clients + kClientsPerSource - 1) / kClientsPerSource, 1, kMaxSources));
  }
  count = std::min(count, kMaxSources);
  if (count > 0 && !kernel_has_bind_op()) {
    plan.notes.push_back("IORING_OP_BIND (Linux 6.11) is missing: connecting without a source address");
    count = 0;
  }
  for (int i = 1; i <= count; ++i) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_addr.s_addr = htonl(0x7F000000U | static_cast<std::uint32_t>(i));  // port 0: any
    plan.sources.push_back(source);
  }
  const auto per_address = static_cast<std::uint32_t>(ephemeral_ports() * kPortRangeShare);
  const auto capacity = static_cast<std::uint64_t>(per_address) * plan.hubs.size() *
                        std::max<std::size_t>(plan.sources.size(), 1);
  if (plan.clients > capacity) {
    plan.notes.push_back(
        fmt::format("{} clients exceed the ~{} ports {} source x {} hub addresses offer: capped "
                    "(use --sources or a hub range such as 127.0.0.1-8:PORT with ringhub "
                    "--bind 0.0.0.0)",
                    plan.clients, capacity, plan.sources.size(), plan.hubs.size()));
    plan.clients = static_cast<std::uint32_t>(capacity);
  }
}

Result<void> plan_threads(const Options& o, RunPlan& plan) {
  const Result<unsigned> raised = uring::raise_open_file_limit();
  const unsigned table_limit = raised ? *raised : 1024;
  plan.threads =
      o.threads != 0 ? o.threads : std::max(2U, (plan.clients + kClientsPerRing - 1) / kClientsPerRing);
  plan.threads = std::min(plan.threads, std::max(plan.clients, 1U));
  const std::uint32_t per_thread = (plan.clients + plan.threads - 1) / plan.threads;
  plan.table_size = std::min(table_limit, per_thread + kTableSlack);
  if (per_thread > plan.table_size) {
    return make_error(
        fmt::format("{} clients per thread exceed the direct-descriptor table limit {} "
                    "(RLIMIT_NOFILE): use more --threads",
                    per_thread, table_limit));
  }
  return {};
}

void plan_relay(const Options& o, RunPlan& plan) {
  plan.senders = std::clamp<std::uint32_t>(static_cast<std::uint32_t>(std::lround(o.senders * plan.clients)),
                                           plan.clients > 1 ? 1 : 0, plan.clients);
  plan.relays = o.relays;
  plan.max_size = o.max_size;
  plan.max_fanout = o.max_fanout;
  if (o.max_in_flight >= 0) {
    plan.max_in_flight = static_cast<std::uint64_t>(o.max_in_flight);
  } else if (const std::optional<KernelTcpMemory> tcp = read_kernel_tcp_memory()) {
    plan.max_in_flight = tcp->pressure_pages * kTcpPageBytes / kInFlightShareOfTcpPressure;
  } else {
    plan.max_in_flight = kFallbackMaxInFlight;
  }
}

}  // namespace

std::string address_text(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address.sin_addr, text, sizeof text);
  return fmt::format("{}:{}", text, ntohs(address.sin_port));
}

void add_flags(CLI::App& app, Options& o) {
  app.add_option("--mode", o.mode, "line (message X / ok X) or relay (IDENTITY, RELAY, DELIVER)")
      ->check(CLI::IsMember({"line", "relay"}))
      ->capture_default_str();
  app.add_option("--clients", o.clients, "Clients in all")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--ramp", o.ramp_s, "Seconds over which clients start, uniformly at random")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option(
         "--ok-delay", o.ok_delay,
         "Line: delay before answering `message Y`: 0, 10ms, 100ms-1000ms, or 0:50%,10ms:30%,1s-2s:20%")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_ms,
                 "Milliseconds to wait for `ok X` (and for a connect) before retrying")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--retries", o.retries, "Reconnect-and-resend attempts per client before it gives up")
      ->capture_default_str();
  app.add_option("--hub", o.hub,
                 "Hub HOST:PORT, or a range 127.0.0.1-8:PORT spread over (default port by mode)");
  app.add_option("--admin", o.admin, "Hub admin HOST:PORT for GET /metrics, or 'off'")->capture_default_str();
  app.add_option("--threads", o.threads, "Engine threads, one io_uring each (0: one per 18000 clients, >= 2)")
      ->capture_default_str();
  app.add_option("--sources", o.sources,
                 "Source addresses 127.0.0.1..N to bind (-1: one per 5000 clients; 0: none)")
      ->capture_default_str();
  app.add_option("--deadline", o.deadline_s,
                 "Seconds before everything still open is closed (0: ramp + 120, in relay mode plus the "
                 "planned bytes at 64 MiB/s)")
      ->capture_default_str();
  app.add_option("--senders", o.senders, "Relay: share of clients that send")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--relays", o.relays, "Relay: RELAY frames per sender")->capture_default_str();
  app.add_option("--max-size", o.max_size, "Relay: largest body in bytes (sizes are log-uniform from 24)")
      ->check(CLI::Range(24U, 1U << 20))
      ->capture_default_str();
  app.add_option("--max-fanout", o.max_fanout, "Relay: most receivers per RELAY (fan-out is uniform from 1)")
      ->check(CLI::Range(1U, 255U))
      ->capture_default_str();
  app.add_option("--max-in-flight", o.max_in_flight,
                 "Relay: most delivery bytes (fan-out x frame) started and not yet received (-1: a third of "
                 "this host's tcp_mem pressure level; 0: no limit)")
      ->capture_default_str();
  app.add_option("--hub-pid", o.hub_pid,
                 "Hub process id: report its peak RSS (VmHWM) and RSS per connection");
  app.add_option("--seed", o.seed, "Random seed (0: pick one and print it)")->capture_default_str();
  app.add_flag("--json", o.json, "Print the result as JSON on stdout (the table goes to stderr)");
  app.add_flag("--quiet", o.quiet, "No live progress line");
}

double expected_relay_bytes(const RunPlan& plan) {
  if (plan.mode != Mode::kRelay || plan.clients < 2) {
    return 0;
  }
  // Sizes are log-uniform from the payload header to max_size, fan-out uniform from 1.
  const double low = static_cast<double>(payload::kHeaderSize);
  const double high = std::max(static_cast<double>(plan.max_size), low + 1);
  const double mean_size = (high - low) / std::log(high / low);
  const double mean_fanout = (std::min<double>(plan.max_fanout, plan.clients - 1) + 1) / 2;
  return static_cast<double>(plan.senders) * plan.relays * mean_size * mean_fanout;
}

double delivery_allowance_s(const RunPlan& plan) {
  return expected_relay_bytes(plan) / kSlowestDeliveryBytesPerSecond;
}

Result<RunPlan> make_plan(const Options& o) {
  RunPlan plan;
  plan.mode = o.mode == "relay" ? Mode::kRelay : Mode::kLine;
  plan.clients = o.clients;
  auto delay = DelaySpec::parse(o.ok_delay);
  if (!delay) {
    return make_error(fmt::format("--ok-delay: {}", delay.error().message));
  }
  plan.ok_delay = std::move(*delay);
  if (Result<void> addresses = plan_addresses(o, plan); !addresses) {
    return addresses.error();
  }
  plan_sources(o, plan);
  if (Result<void> threads = plan_threads(o, plan); !threads) {
    return threads.error();
  }
  plan_relay(o, plan);
  plan.buffer_count = plan.mode == Mode::kLine ? kLineBuffers : kRelayBuffers;
  plan.buffer_size = plan.mode == Mode::kLine ? kLineBufferSize : kRelayBufferSize;
  plan.ramp_ns = static_cast<std::int64_t>(o.ramp_s * 1e9);
  plan.timeout_ns = std::int64_t{o.timeout_ms} * 1'000'000;
  plan.deadline_ns = static_cast<std::int64_t>(
      (o.deadline_s > 0 ? o.deadline_s : o.ramp_s + kDefaultDeadlineSlack + delivery_allowance_s(plan)) *
      1e9);
  plan.retries = o.retries;
  plan.seed = o.seed != 0 ? o.seed : std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
  plan.hub_pid = o.hub_pid;
  plan.json = o.json;
  plan.quiet = o.quiet;
  return plan;
}

}  // namespace ringhub::stress
