// ringhub-perf flags and their validation. Load goes to loopback only (127.0.0.0/8): the harness is for
// measuring servers on this machine, never for pointing at someone else's.
#include "perf/loadgen/perf_options.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>

#include "core/protocol.hpp"

namespace ringhub::perf {

namespace {

constexpr unsigned kDefaultWindow = 256;
constexpr unsigned kMaxPublishers = 1024;
constexpr std::uint32_t kMaxIdleConnections = 200'000;

Result<sockaddr_in> parse_loopback(const std::string& text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return make_error(fmt::format("--addr {}: expected HOST:PORT", text));
  }
  unsigned port = 0;
  const std::string port_text = text.substr(colon + 1);
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    return make_error(fmt::format("--addr {}: bad port", text));
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const std::string host = text.substr(0, colon);
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    return make_error(fmt::format("--addr {}: {} is not an IPv4 address", text, host));
  }
  if ((ntohl(address.sin_addr.s_addr) >> 24) != 127) {
    return make_error(
        fmt::format("--addr {}: not a loopback address; ringhub-perf loads 127.0.0.0/8 only", text));
  }
  return address;
}

Result<Target> parse_target(const std::string& text) {
  for (const Target t : {Target::kRinghub, Target::kNats, Target::kRedis}) {
    if (text == target_name(t)) {
      return t;
    }
  }
  return make_error(fmt::format("--target {}: expected ringhub, nats or redis", text));
}

}  // namespace

void add_flags(CLI::App& app, PerfOptions& o) {
  app.add_option("--target", o.target_text,
                 "Server protocol: ringhub (relay frames), nats or redis (pub/sub)")
      ->capture_default_str();
  app.add_option("--addr", o.addr, "Server HOST:PORT on loopback")->capture_default_str();
  app.add_option("--publishers", o.publishers, "Publishing connections (P)")->capture_default_str();
  app.add_option("--fanout", o.fanout, "Receivers each message reaches (K, 1..255)")->capture_default_str();
  app.add_option("--size", o.size, "Message body bytes (S); >= 32 carries a sequence stamp")
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "Measured seconds")->capture_default_str();
  app.add_option("--warmup", o.warmup_s, "Seconds of load before measuring")->capture_default_str();
  app.add_option("--rate", o.rate, "Fixed rate: messages/s published over all publishers (0: saturating)")
      ->capture_default_str();
  app.add_option("--window", o.window, "Saturating: messages in flight per publisher (0: auto)")
      ->capture_default_str();
  app.add_option("--window-bytes", o.window_bytes,
                 "Auto window: at most this many delivery bytes (size x fan-out) in flight per publisher")
      ->capture_default_str();
  app.add_option("--server-pid", o.server_pid, "Server process to read CPU and RSS from (/proc)");
  app.add_flag("--checksum", o.checksum, "Checksum every body (costs the load generator a pass per byte)");
  app.add_flag("--json", o.json, "One JSON object on stdout (the summary goes to stderr)");
  app.add_option("--idle-conns", o.idle_conns, "Connection-scale mode: open N idle connections, report RSS");
  app.add_option("--stall", o.stall_s, "Fail when nothing is delivered for this many seconds")
      ->capture_default_str();
  app.add_option("--drain", o.drain_s, "Seconds stragglers may take after the measured window")
      ->capture_default_str();
  app.add_option("--buffer-kib", o.buffer_kib, "Receive buffer size (KiB); 512 of them")
      ->capture_default_str();
}

Result<void> finish_options(PerfOptions& o) {
  auto target = parse_target(o.target_text);
  if (!target) {
    return make_error(target.error().message);
  }
  o.target = *target;
  auto address = parse_loopback(o.addr);
  if (!address) {
    return make_error(address.error().message);
  }
  o.address = *address;
  if (o.idle_conns > kMaxIdleConnections) {
    return make_error(fmt::format("--idle-conns: at most {}", kMaxIdleConnections));
  }
  if (o.publishers == 0 || o.publishers > kMaxPublishers) {
    return make_error(fmt::format("--publishers: 1..{}", kMaxPublishers));
  }
  if (o.fanout == 0 || o.fanout > protocol::kMaxReceivers) {
    return make_error(
        fmt::format("--fanout: 1..{} (a RELAY names at most that many)", protocol::kMaxReceivers));
  }
  if (o.size > protocol::kMaxBodySize) {
    return make_error(fmt::format("--size: at most {} (ringhub's largest body)", protocol::kMaxBodySize));
  }
  if (o.duration_s <= 0 || o.warmup_s < 0 || o.rate < 0 || o.stall_s <= 0 || o.drain_s <= 0 ||
      o.buffer_kib == 0 || o.buffer_kib > 1024) {
    return make_error(
        "--duration, --stall, --drain and --buffer-kib (<= 1024) must be positive; "
        "--warmup and --rate not negative");
  }
  if (o.window == 0) {  // bytes to deliver in flight per publisher: a message counts once per receiver
    const std::size_t delivery_bytes = std::max<std::size_t>(o.size, 1) * o.fanout;
    o.window =
        static_cast<unsigned>(std::clamp<std::size_t>(o.window_bytes / delivery_bytes, 1, kDefaultWindow));
  }
  return {};
}

}  // namespace ringhub::perf
