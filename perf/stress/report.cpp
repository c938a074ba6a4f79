// Totals, the verdict, the summary table and the JSON; see report.hpp.
#include "perf/stress/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "perf/stress/json_text.hpp"

namespace ringhub::stress {

namespace {

constexpr double kNanosPerSecond = 1e9;
constexpr double kNanosPerMilli = 1e6;
constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kPageBytes = 4096;  // /proc/net/sockstat and tcp_mem count pages
// Below this many concurrent connections, RSS growth is mostly buffer pools: dividing says nothing.
constexpr double kMinConnectionsForPerConnection = 1000;

struct Quantile {
  const char* name;
  double q;
};
constexpr Quantile kQuantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p99.9", 0.999}};

std::string seconds(std::int64_t nanos) {
  if (nanos < 1'000'000'000) {
    return fmt::format("{:.3f} ms", static_cast<double>(nanos) / kNanosPerMilli);
  }
  return fmt::format("{:.3f} s", static_cast<double>(nanos) / kNanosPerSecond);
}

std::string millis(std::int64_t nanos) {
  return fmt::format("{:.3f} ms", static_cast<double>(nanos) / kNanosPerMilli);
}

// A flat JSON object built field by field: numbers, booleans, strings and ready-made JSON.
class JsonObject {
 public:
  JsonObject& add(std::string_view key, std::string_view value) { return raw(key, json_string(value)); }
  JsonObject& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  JsonObject& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  JsonObject& add(std::string_view key, bool value) { return raw(key, value ? "true" : "false"); }
  JsonObject& add(std::string_view key, double value) { return raw(key, fmt::format("{:.6g}", value)); }
  template <typename T>
  requires std::is_integral_v<T> JsonObject& add(std::string_view key, T value) {
    return raw(key, fmt::format("{}", value));
  }
  JsonObject& raw(std::string_view key, std::string_view json) {
    text_ += text_.empty() ? "{" : ", ";
    text_ += json_string(key) + ": ";
    text_ += json;
    return *this;
  }
  std::string str() const { return text_.empty() ? "{}" : text_ + "}"; }

 private:
  std::string text_;
};

std::int64_t tail_ns(const Totals& t) {
  return t.last_close_ns > t.last_start_ns ? t.last_close_ns - t.last_start_ns : 0;
}

std::int64_t spread_ns(const Totals& t) {
  return t.last_start_ns > t.first_start_ns ? t.last_start_ns - t.first_start_ns : 0;
}

void evaluate_line(const RunPlan& plan, RunOutcome& o) {
  const Totals& t = o.totals;
  if (t.done != plan.clients) {
    o.failures.push_back(fmt::format("{} of {} clients got their `ok X`", t.done, plan.clients));
  }
  if (t.misrouted_oks != 0 || t.duplicate_oks != 0) {
    o.failures.push_back(
        fmt::format("{} oks for someone else's X, {} repeated oks", t.misrouted_oks, t.duplicate_oks));
  }
}

void evaluate_relay(const RunPlan& plan, RunOutcome& o) {
  const Totals& t = o.totals;
  if (t.done != plan.clients) {
    o.failures.push_back(
        fmt::format("{} of {} clients identified, stayed connected and closed", t.done, plan.clients));
  }
  if (t.relays_sent != o.relays_planned) {
    o.failures.push_back(fmt::format("{} of {} RELAY frames written", t.relays_sent, o.relays_planned));
  }
  if (t.verified != o.deliveries_expected || t.bad_deliveries != 0 || t.missing_deliveries != 0 ||
      t.extra_deliveries != 0) {
    o.failures.push_back(fmt::format("deliveries: {} verified of {} expected, {} bad, {} missing, {} extra",
                                     t.verified, o.deliveries_expected, t.bad_deliveries,
                                     t.missing_deliveries, t.extra_deliveries));
  }
  if (o.stalled) {
    o.failures.push_back("deliveries stopped arriving for --timeout before all were verified");
  }
}

void print_latency(std::FILE* out, const LatencyHistogram& h) {
  fmt::print(out, "  latency, `message X` sent -> `ok X` received ({} samples):\n   ", h.count());
  for (const Quantile& q : kQuantiles) {
    fmt::print(out, " {} {}", q.name, millis(h.quantile(q.q)));
  }
  fmt::print(out, "  max {}  mean {}\n", millis(h.max()), millis(static_cast<std::int64_t>(h.mean())));
}

// Byte counters as integers in the JSON: a double there keeps six significant digits.
std::uint64_t whole_bytes(double bytes) {
  return static_cast<std::uint64_t>(std::llround(bytes));
}

double copied(const HubReport& hub, const char* reason) {
  return hub.delta(metric::kCopiedPrefix + reason + "\"}");
}

void print_hub_relay(std::FILE* out, const RunOutcome& o) {
  const HubReport& hub = o.hub;
  fmt::print(out,
             "  hub: bytes out {:.0f} (planned DELIVERs and IDENTITY replies: {}), budget pauses {:.0f}, "
             "frame timeouts {:.0f}\n",
             hub.delta(metric::kBytesOut), o.audit.hub_bytes_expected, hub.delta(metric::kBudgetPauses),
             hub.delta(metric::kFrameTimeouts));
  fmt::print(out, "  hub: bytes copied in user space:");
  for (const char* reason : metric::kCopyReasons) {
    fmt::print(out, " {} {:.1f} MiB", reason, copied(hub, reason) / kMiB);
  }
  // copy_out and assembly copy a frame at most once, whatever its fan-out: they stay below what the hub
  // read. batch is per receiver, but only of slices up to --batch-threshold.
  fmt::print(out, " (once per frame: {:.1f} of {:.1f} MiB read)\n",
             (copied(hub, "copy_out") + copied(hub, "assembly")) / kMiB, hub.delta(metric::kBytesIn) / kMiB);
  if (hub.at_close) {
    const MetricsSnapshot& s = *hub.at_close;
    fmt::print(out,
               "  hub when the harness closed: bytes out {:.0f}, queued {:.0f} bytes, {:.0f} connections "
               "paused for memory, memory in use {:.1f} of {:.1f} MiB\n",
               s.value(metric::kBytesOut) - hub.start.value(metric::kBytesOut),
               s.value(metric::kOutboundQueued), s.value(metric::kReadPaused),
               s.value(metric::kMemoryInUse) / kMiB, s.value(metric::kMemoryBudget) / kMiB);
  }
}

// The host's TCP under the run: drops for lack of socket memory are recovered by retransmission timers,
// which is what a slow tail or a stall with every byte written by the hub then waits on.
void print_kernel_tcp(std::FILE* out, const RunOutcome& o) {
  const std::uint64_t drops = o.tcp_end.receive_queue_drops - o.tcp_start.receive_queue_drops;
  const std::uint64_t timeouts = o.tcp_end.timeouts - o.tcp_start.timeouts;
  fmt::print(out,
             "  kernel TCP (this host, any process): {} segments dropped for lack of socket memory, {} "
             "retransmission timeouts",
             drops, timeouts);
  if (o.tcp_peak) {
    fmt::print(out, ", peak TCP memory {:.0f} MiB (pressure above {:.0f}, limit {:.0f})",
               static_cast<double>(o.tcp_peak->pages) * kPageBytes / kMiB,
               static_cast<double>(o.tcp_peak->pressure_pages) * kPageBytes / kMiB,
               static_cast<double>(o.tcp_peak->limit_pages) * kPageBytes / kMiB);
  }
  fmt::print(out, "\n");
  if (o.kernel_waits != 0) {
    fmt::print(out,
               "  waited {} times past --timeout on bytes the kernel still held for the clients (up to {})\n",
               o.kernel_waits, o.kernel_wait_peak_bytes);
  }
}

void print_hub(std::FILE* out, const RunPlan& plan, const RunOutcome& o) {
  const HubReport& hub = o.hub;
  if (!hub.metrics) {
    fmt::print(out, "  hub: /metrics not read (--admin off): zero state not checked\n");
  } else {
    if (plan.mode == Mode::kLine) {
      fmt::print(out, "  hub: forwards {:.0f}, re-forwards {:.0f}, unmatched oks {:.0f}\n",
                 hub.delta(metric::kLineForwards), hub.delta(metric::kLineReforwards),
                 hub.delta(metric::kLineUnmatchedOks));
    } else {
      fmt::print(out, "  hub: deliveries {:.0f}, slow-consumer closes {:.0f}\n",
                 hub.delta(metric::kDeliveries), hub.delta(metric::kSlowConsumerCloses));
    }
    fmt::print(out, "  hub: server-full rejects {:.0f}, CQ overflows {:.0f}, peak connections seen {:.0f}\n",
               hub.delta(metric::kServerFullRejects), hub.delta(metric::kCqOverflows), hub.peak_connections);
    fmt::print(out, "  hub zero state after close: {} ({})\n", hub.zero_state ? "yes" : "NO",
               hub.zero_detail);
    if (plan.mode == Mode::kRelay) {
      print_hub_relay(out, o);
    }
  }
  if (hub.memory_end) {
    const double grown = static_cast<double>(hub.memory_end->peak_rss) -
                         static_cast<double>(hub.memory_start ? hub.memory_start->rss : 0);
    fmt::print(out, "  hub memory: peak RSS (VmHWM) {:.1f} MiB, {:.1f} MiB above its RSS at start",
               static_cast<double>(hub.memory_end->peak_rss) / kMiB, grown / kMiB);
    if (hub.peak_connections >= kMinConnectionsForPerConnection) {
      fmt::print(out, ", {:.0f} bytes per peak connection", grown / hub.peak_connections);
    } else {
      fmt::print(out, " (too few connections at once for a per-connection figure)");
    }
    fmt::print(out, "\n");
  }
  if (hub.cpu_start && hub.cpu_end) {
    fmt::print(out, "  hub CPU {:.1f} s during the run\n", *hub.cpu_end - *hub.cpu_start);
  }
}

void print_counts(std::FILE* out, const RunPlan& plan, const Totals& t, const RunOutcome& o) {
  fmt::print(out, "  clients {}  started {}  done {}  failed {}\n", plan.clients, t.started, t.done,
             t.failed);
  fmt::print(out, "  retries {}  reconnects {}  ok timeouts {}  dropped by hub/network {}  hub errors {}\n",
             t.retries, t.reconnects, t.timeouts, t.drops, t.hub_errors);
  if (plan.mode == Mode::kLine) {
    fmt::print(out, "  misrouted oks {}  repeated oks {}\n", t.misrouted_oks, t.duplicate_oks);
  } else {
    fmt::print(out,
               "  identified {}  relays {}/{}  deliveries verified {}/{}  bad {}  missing {}  extra {}\n",
               t.identified, t.relays_sent, o.relays_planned, t.verified, o.deliveries_expected,
               t.bad_deliveries, t.missing_deliveries, t.extra_deliveries);
    fmt::print(out, "  body bytes planned for delivery: {:.1f} MiB\n",
               static_cast<double>(o.bytes_expected) / kMiB);
  }
  fmt::print(out, "  first start -> last start {}   last start -> last close {}   whole run {}\n",
             seconds(spread_ns(t)), seconds(tail_ns(t)), seconds(o.run_end_ns - o.run_start_ns));
}

}  // namespace

void Totals::add(const Tally& x) {
  started += x.started.load();
  done += x.done.load();
  failed += x.failed.load();
  retries += x.retries.load();
  reconnects += x.reconnects.load();
  timeouts += x.timeouts.load();
  drops += x.drops.load();
  identified += x.identified.load();
  relays_sent += x.relays_sent.load();
  verified += x.verified.load();
  misrouted_oks += x.misrouted_oks;
  duplicate_oks += x.duplicate_oks;
  hub_errors += x.hub_errors;
  bad_deliveries += x.bad_deliveries;
  missing_deliveries += x.missing_deliveries;
  extra_deliveries += x.extra_deliveries;
  first_start_ns = std::min(first_start_ns, x.first_start_ns);
  last_start_ns = std::max(last_start_ns, x.last_start_ns);
  last_close_ns = std::max(last_close_ns, x.last_close_ns);
  latency.merge(x.latency);
  for (const std::string& sample : x.failure_samples) {
    if (failure_samples.size() < 2 * kMaxFailureSamples) {
      failure_samples.push_back(sample);
    }
  }
}

void Totals::add(const uring::ClientLoopStats& s) {
  cq_overflows += s.cq_overflows.load();
  enobufs += s.enobufs.load();
  bind_failures += s.bind_failures.load();
  connect_failures += s.connect_failures.load();
  max_timer_lag_ns = std::max(max_timer_lag_ns, s.max_timer_lag_ns.load());
}

void evaluate(const RunPlan& plan, RunOutcome& o) {
  if (!o.ran) {
    return;  // set-up failed: the reason is already in failures
  }
  if (o.interrupted) {
    o.failures.push_back("interrupted");
  }
  if (o.totals.failed != 0) {
    o.failures.push_back(fmt::format("{} clients gave up or never finished", o.totals.failed));
  }
  if (plan.mode == Mode::kLine) {
    evaluate_line(plan, o);
  } else {
    evaluate_relay(plan, o);
  }
  if (o.hub.metrics && !o.hub.zero_state) {
    o.failures.push_back(fmt::format("the hub did not return to zero state: {}", o.hub.zero_detail));
  }
}

void print_summary(std::FILE* out, const RunPlan& plan, const RunOutcome& o) {
  const Totals& t = o.totals;
  if (!o.ran) {
    fmt::print(out, "ringhub-stress: did not run: {}\nRESULT: FAIL\n", o.failures.front());
    return;
  }
  fmt::print(out,
             "\nringhub-stress: {} mode, {} clients on {} threads, {} source address(es) -> {}, seed {}\n",
             plan.mode == Mode::kLine ? "line" : "relay", plan.clients, plan.threads, plan.sources.size(),
             plan.hub_text, plan.seed);
  fmt::print(out, "  ramp {} s, timeout {} ms, retries {}{}\n",
             static_cast<double>(plan.ramp_ns) / kNanosPerSecond, plan.timeout_ns / 1'000'000, plan.retries,
             plan.mode == Mode::kLine
                 ? ", ok-delay " + plan.ok_delay.text()
                 : fmt::format(", {} senders x {} relays, max size {}, max fan-out {}, max in flight {}",
                               plan.senders, plan.relays, plan.max_size, plan.max_fanout,
                               plan.max_in_flight == 0 ? std::string("unlimited")
                                                       : fmt::format("{} MiB", plan.max_in_flight >> 20)));
  for (const std::string& note : plan.notes) {
    fmt::print(out, "  note: {}\n", note);
  }
  print_counts(out, plan, t, o);
  if (plan.mode == Mode::kLine) {
    print_latency(out, t.latency);
  }
  print_hub(out, plan, o);
  fmt::print(out,
             "  harness: peak RSS {:.1f} MiB, peak open connections {}, worst timer lag {}, CQ overflows {}, "
             "ENOBUFS {}, bind failures {}, connect failures {}\n",
             static_cast<double>(o.harness_peak_rss) / kMiB, o.harness_peak_open, millis(t.max_timer_lag_ns),
             t.cq_overflows, t.enobufs, t.bind_failures, t.connect_failures);
  fmt::print(out, "  harness CPU {:.1f} s\n", o.harness_cpu_s);
  print_kernel_tcp(out, o);
  for (const std::string& sample : t.failure_samples) {
    fmt::print(out, "  sample failure: {}\n", sample);
  }
  if (o.audit.missing != 0) {
    fmt::print(out,
               "  {} planned deliveries never arrived ({} of them in relays never written); the first {}:\n",
               o.audit.missing, o.audit.missing_unsent, o.audit.samples.size());
  }
  for (const std::string& sample : o.audit.samples) {
    fmt::print(out, "    {}\n", sample);
  }
  fmt::print(out, "RESULT: {}\n", o.failures.empty() ? "PASS" : "FAIL");
  for (const std::string& failure : o.failures) {
    fmt::print(out, "  - {}\n", failure);
  }
}

std::string to_json(const RunPlan& plan, const RunOutcome& o) {
  const Totals& t = o.totals;
  const HubReport& hub = o.hub;
  JsonObject latency;
  latency.add("count", t.latency.count()).add("mean_ms", t.latency.mean() / kNanosPerMilli);
  for (const Quantile& q : kQuantiles) {
    latency.add(fmt::format("{}_ms", q.name), static_cast<double>(t.latency.quantile(q.q)) / kNanosPerMilli);
  }
  latency.add("max_ms", static_cast<double>(t.latency.max()) / kNanosPerMilli);
  JsonObject json;
  json.add("mode", plan.mode == Mode::kLine ? "line" : "relay").add("passed", o.failures.empty());
  json.raw("failures", json_strings(o.failures)).add("clients", plan.clients).add("threads", plan.threads);
  json.add("sources", plan.sources.size()).add("hub", plan.hub_text).add("seed", plan.seed);
  json.add("ramp_s", static_cast<double>(plan.ramp_ns) / kNanosPerSecond)
      .add("ok_delay", plan.ok_delay.text());
  json.add("timeout_ms", plan.timeout_ns / 1'000'000).add("retry_budget", plan.retries);
  json.add("started", t.started).add("done", t.done).add("failed", t.failed).add("retries", t.retries);
  json.add("reconnects", t.reconnects).add("ok_timeouts", t.timeouts).add("drops", t.drops);
  json.add("misrouted_oks", t.misrouted_oks)
      .add("duplicate_oks", t.duplicate_oks)
      .add("hub_errors", t.hub_errors);
  json.add("identified", t.identified)
      .add("relays_planned", o.relays_planned)
      .add("relays_sent", t.relays_sent);
  json.add("deliveries_expected", o.deliveries_expected).add("deliveries_verified", t.verified);
  json.add("bad_deliveries", t.bad_deliveries).add("missing_deliveries", t.missing_deliveries);
  json.add("extra_deliveries", t.extra_deliveries).add("bytes_expected", o.bytes_expected);
  json.add("start_spread_s", static_cast<double>(spread_ns(t)) / kNanosPerSecond);
  json.add("last_start_to_last_close_s", static_cast<double>(tail_ns(t)) / kNanosPerSecond);
  json.add("run_s", static_cast<double>(o.run_end_ns - o.run_start_ns) / kNanosPerSecond);
  json.raw("latency", latency.str());
  json.add("hub_metrics", hub.metrics)
      .add("hub_zero_state", hub.zero_state)
      .add("hub_zero_detail", hub.zero_detail);
  json.add("hub_forwards", hub.delta(metric::kLineForwards))
      .add("hub_reforwards", hub.delta(metric::kLineReforwards));
  json.add("hub_unmatched_oks", hub.delta(metric::kLineUnmatchedOks))
      .add("hub_deliveries", hub.delta(metric::kDeliveries));
  json.add("hub_peak_connections", hub.peak_connections)
      .add("hub_bytes_out", whole_bytes(hub.delta(metric::kBytesOut)));
  json.add("hub_bytes_expected", o.audit.hub_bytes_expected);
  for (const char* reason : metric::kCopyReasons) {
    json.add(fmt::format("hub_copied_{}_bytes", reason), whole_bytes(copied(hub, reason)));
  }
  if (hub.cpu_start && hub.cpu_end) {
    json.add("hub_cpu_s", *hub.cpu_end - *hub.cpu_start);
  }
  json.add("harness_cpu_s", o.harness_cpu_s).add("missing_found", o.audit.missing);
  json.add("tcp_receive_queue_drops", o.tcp_end.receive_queue_drops - o.tcp_start.receive_queue_drops);
  json.add("tcp_timeouts", o.tcp_end.timeouts - o.tcp_start.timeouts).add("kernel_waits", o.kernel_waits);
  json.add("tcp_peak_pages", o.tcp_peak ? o.tcp_peak->pages : 0);
  json.raw("missing_samples", json_strings(o.audit.samples));
  if (hub.memory_end) {
    json.add("hub_peak_rss_bytes", hub.memory_end->peak_rss);
    json.add("hub_start_rss_bytes", hub.memory_start ? hub.memory_start->rss : 0);
  }
  json.add("harness_peak_rss_bytes", o.harness_peak_rss).add("harness_peak_open", o.harness_peak_open);
  json.add("max_timer_lag_ms", static_cast<double>(t.max_timer_lag_ns) / kNanosPerMilli);
  json.add("cq_overflows", t.cq_overflows).add("enobufs", t.enobufs).add("bind_failures", t.bind_failures);
  json.add("connect_failures", t.connect_failures).raw("failure_samples", json_strings(t.failure_samples));
  return json.str();
}

}  // namespace ringhub::stress
