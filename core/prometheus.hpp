// Prometheus text exposition (format 0.0.4) of the hub's figures, served by the admin server's
// /metrics. Pure: takes a snapshot and returns text; reading /proc and serving HTTP live in transport/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/stats.hpp"

namespace ringhub {

// The Content-Type a scraper expects for this format; the server sends it with every /metrics reply.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Figures that are not hub counters: they come from /proc and the clock when /metrics is served.
struct MetricsExtras {
  std::uint64_t resident_memory_bytes = 0;  // process RSS
  std::uint64_t open_fds = 0;               // process file descriptors open now
  double uptime_seconds = 0.0;              // since the hub started
};

// Every family gets # HELP and # TYPE lines; counters end in _total, gauges do not. The text ends with
// a newline, as the format requires.
std::string render_metrics(const HubStats& stats, const MetricsExtras& extras);

}  // namespace ringhub
