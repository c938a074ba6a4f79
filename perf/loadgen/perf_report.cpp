// JSON and text renderings of BenchResult and IdleResult. Rates divide by the measured window's actual
// length; server figures are the difference of two /proc samples around that window.
#include "perf/loadgen/perf_report.hpp"

#include <fmt/format.h>

#include "perf/stress/json_text.hpp"

namespace ringhub::perf {

namespace {

double per_second(std::uint64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0;
}

double server_cpu(const BenchResult& r) {
  return r.server_start && r.server_end ? r.server_end->cpu_s - r.server_start->cpu_s : 0;
}

double load_cpu(const BenchResult& r) {
  return r.load_start && r.load_end ? r.load_end->cpu_s - r.load_start->cpu_s : 0;
}

// The load generator's CPU over the window: near the window's length (compare.sh pins it to one core)
// means it, not the server, set the pace.
std::string load_json(const BenchResult& r) {
  if (!r.load_start || !r.load_end) {
    return "null";
  }
  return fmt::format(R"({{"cpu_s":{:.3f}}})", load_cpu(r));
}

std::string server_json(const PerfOptions& o, const BenchResult& r) {
  if (!r.server_start || !r.server_end) {
    return "null";
  }
  const double cpu = server_cpu(r);
  const double per_delivery = r.delivered > 0 ? cpu * 1e6 / static_cast<double>(r.delivered) : 0;
  return fmt::format(
      R"({{"pid":{},"cpu_s":{:.3f},"cpu_us_per_delivery":{:.4f},"rss_bytes":{},"hwm_bytes":{}}})",
      o.server_pid, cpu, per_delivery, r.server_end->rss_bytes, r.server_end->hwm_bytes);
}

std::string latency_json(const BenchResult& r) {
  const auto& h = r.latency;
  return fmt::format(R"({{"count":{},"mean":{:.0f},"p50":{},"p99":{},"p999":{},"max":{}}})", h.count(),
                     h.mean(), h.quantile(0.5), h.quantile(0.99), h.quantile(0.999), h.max());
}

}  // namespace

std::string bench_json(const PerfOptions& o, const BenchResult& r) {
  return fmt::format(
      R"({{"target":"{}","mode":"{}","publishers":{},"fanout":{},"size":{},"window":{},"duration_s":{:.3f},)"
      R"("rate_target":{},"rate_kept":{},"published":{},"delivered":{},"published_per_s":{:.1f},)"
      R"("delivered_per_s":{:.1f},"delivered_bytes_per_s":{:.1f},"latency_ns":{},"server":{},"load":{},)"
      R"("verify":{{"ok":{},"lost":{},"out_of_order":{},"corrupt":{},"duplicates":{},"expected_total":{},)"
      R"("delivered_total":{},"checksum":{}}},"errors":{}}})",
      target_name(o.target), o.rate > 0 ? "fixed" : "saturating", o.publishers, o.fanout, o.size, o.window,
      r.seconds, o.rate, r.rate_kept, r.published, r.delivered, per_second(r.published, r.seconds),
      per_second(r.delivered, r.seconds), per_second(r.delivered_bytes, r.seconds), latency_json(r),
      server_json(o, r), load_json(r), r.ok(), r.lost, r.out_of_order, r.corrupt, r.duplicates,
      r.expected_total, r.delivered_total, o.checksum, stress::json_strings(r.errors));
}

std::string bench_summary(const PerfOptions& o, const BenchResult& r) {
  std::string out = fmt::format(
      "{} {}: P={} K={} S={} B over {:.2f} s: {:.0f} delivered msgs/s, {:.1f} MB/s delivered, {:.0f} "
      "published/s\n",
      target_name(o.target), o.rate > 0 ? fmt::format("fixed {:.0f}/s", o.rate) : std::string("saturating"),
      o.publishers, o.fanout, o.size, r.seconds, per_second(r.delivered, r.seconds),
      per_second(r.delivered_bytes, r.seconds) / 1e6, per_second(r.published, r.seconds));
  const auto& h = r.latency;
  out += fmt::format("latency µs: p50 {:.1f}  p99 {:.1f}  p99.9 {:.1f}  max {:.1f} ({} samples)\n",
                     static_cast<double>(h.quantile(0.5)) / 1e3, static_cast<double>(h.quantile(0.99)) / 1e3,
                     static_cast<double>(h.quantile(0.999)) / 1e3, static_cast<double>(h.max()) / 1e3,
                     h.count());
  if (r.server_start && r.server_end) {
    out += fmt::format("server: {:.2f} CPU s, {:.3f} µs CPU per delivery, RSS {:.1f} MiB (peak {:.1f} MiB)\n",
                       server_cpu(r),
                       r.delivered > 0 ? server_cpu(r) * 1e6 / static_cast<double>(r.delivered) : 0.0,
                       static_cast<double>(r.server_end->rss_bytes) / 1048576.0,
                       static_cast<double>(r.server_end->hwm_bytes) / 1048576.0);
  }
  if (r.load_start && r.load_end) {
    out += fmt::format("load generator: {:.2f} CPU s over the {:.2f} s window\n", load_cpu(r), r.seconds);
  }
  out += fmt::format("verify: {} (lost {}, out of order {}, duplicates {}, corrupt {}; {} of {} delivered)\n",
                     r.ok() ? "ok" : "FAILED", r.lost, r.out_of_order, r.duplicates, r.corrupt,
                     r.delivered_total, r.expected_total);
  if (o.rate > 0 && !r.rate_kept) {
    out += "rate: the server could not keep up; publishers waited (the wait is in the latency)\n";
  }
  for (const std::string& e : r.errors) {
    out += fmt::format("error: {}\n", e);
  }
  return out;
}

namespace {

double rss_per_connection(const IdleResult& r) {
  if (!r.before || !r.after || r.opened == 0) {
    return 0;
  }
  return (static_cast<double>(r.after->rss_bytes) - static_cast<double>(r.before->rss_bytes)) /
         static_cast<double>(r.opened);
}

}  // namespace

std::string idle_json(const PerfOptions& o, const IdleResult& r) {
  return fmt::format(
      R"({{"target":"{}","mode":"idle","connections":{},"opened":{},"failed":{},"seconds_to_open":{:.3f},)"
      R"("accept_per_s":{:.0f},"rss_before_bytes":{},"rss_after_bytes":{},"rss_per_conn_bytes":{:.1f},)"
      R"("complete":{},"errors":{}}})",
      target_name(o.target), r.requested, r.opened, r.failed, r.seconds_to_open,
      per_second(r.opened, r.seconds_to_open), r.before ? r.before->rss_bytes : 0,
      r.after ? r.after->rss_bytes : 0, rss_per_connection(r), r.complete(), stress::json_strings(r.errors));
}

std::string idle_summary(const PerfOptions& o, const IdleResult& r) {
  std::string out = fmt::format("{} idle: {} of {} connections open in {:.2f} s ({:.0f}/s), {} failed\n",
                                target_name(o.target), r.opened, r.requested, r.seconds_to_open,
                                per_second(r.opened, r.seconds_to_open), r.failed);
  if (r.before && r.after) {
    out += fmt::format("server RSS {:.1f} -> {:.1f} MiB: {:.0f} B per connection\n",
                       static_cast<double>(r.before->rss_bytes) / 1048576.0,
                       static_cast<double>(r.after->rss_bytes) / 1048576.0, rss_per_connection(r));
  }
  for (const std::string& e : r.errors) {
    out += fmt::format("error: {}\n", e);
  }
  return out;
}

}  // namespace ringhub::perf
