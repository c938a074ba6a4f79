// Renders HubStats and MetricsExtras as Prometheus text; see core/prometheus.hpp. The families come in
// a fixed order (gauges, relay counters, line counters, process) so a scrape diff reads cleanly.
#include "core/prometheus.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>

#include "core/protocol.hpp"

namespace ringhub {

namespace {

enum class Kind { kCounter, kGauge };

// Appends families and samples to one string. Names and help texts are our own constants, so only
// label values (which come from other tables) are escaped.
class Exposition {
 public:
  void family(std::string_view name, Kind kind, std::string_view help) {
    append("# HELP ", name, " ", help, "\n");
    append("# TYPE ", name, kind == Kind::kCounter ? " counter\n" : " gauge\n");
  }

  // `labels` is the text between the braces, already escaped; empty for none.
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    std::array<char, 24> digits{};  // 20 digits hold any u64
    const auto end = std::to_chars(digits.begin(), digits.end(), value).ptr;
    sample_text(name, labels, std::string_view(digits.data(), end - digits.begin()));
  }

  void sample(std::string_view name, std::string_view labels, double value) {
    sample_text(name, labels, format_double(value));
  }

  // A family with exactly one unlabelled sample: most of ours.
  template <typename T>
  void single(std::string_view name, Kind kind, std::string_view help, T value) {
    family(name, kind, help);
    sample(name, {}, value);
  }

  std::string take() { return std::move(out_); }

 private:
  template <typename... Parts>
  void append(const Parts&... parts) {
    (out_.append(parts), ...);
  }

  void sample_text(std::string_view name, std::string_view labels, std::string_view value) {
    out_.append(name);
    if (!labels.empty()) {
      append("{", labels, "}");
    }
    append(" ", value, "\n");
  }

  // The format spells the special values NaN, +Inf and -Inf; to_chars would write nan and inf.
  static std::string format_double(double value) {
    if (std::isnan(value)) {
      return "NaN";
    }
    if (std::isinf(value)) {
      return value > 0 ? "+Inf" : "-Inf";
    }
    std::array<char, 32> digits{};  // the shortest round-trip form of a double fits in 24
    const auto end = std::to_chars(digits.begin(), digits.end(), value).ptr;
    return std::string(digits.data(), end - digits.begin());
  }

  std::string out_;
};

// Label values may hold any UTF-8; the format reserves backslash, double quote and newline.
std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

// "length inconsistent with count" -> "length_inconsistent_with_count": the protocol's own names,
// in label form, so the one table of codes stays in core/frame_codec.cpp.
std::string snake_case(std::string_view words) {
  std::string out(words);
  for (char& c : out) {
    if (c == ' ' || c == '-') {
      c = '_';
    }
  }
  return out;
}

void render_gauges(Exposition& out, const HubStats& stats) {
  out.family("ringhub_connections", Kind::kGauge, "Client connections open now, by protocol.");
  out.sample("ringhub_connections", R"(protocol="relay")", stats.connections);
  out.sample("ringhub_connections", R"(protocol="line")", stats.line_connections);
  out.single("ringhub_line_pending_messages", Kind::kGauge,
             "Line-protocol messages forwarded and not yet acknowledged.", stats.line_pending);
  out.single("ringhub_buffer_bytes_in_use", Kind::kGauge, "Receive-buffer bytes out of the ring now.",
             stats.buffer_bytes_in_use);
  out.single("ringhub_memory_budget_bytes", Kind::kGauge,
             "The memory budget (--max-memory) for what the hub holds for clients.", stats.memory_budget);
  out.single("ringhub_memory_in_use_bytes", Kind::kGauge,
             "Bytes held for clients now, as allocated: frames, assemblies, replies, batches, queues.",
             stats.memory_in_use);
  out.single("ringhub_memory_reserved_bytes", Kind::kGauge,
             "Bytes reserved for the rest of large frames being received, not yet charged.",
             stats.memory_reserved);
  out.single("ringhub_read_paused_connections", Kind::kGauge,
             "Connections whose input is not read until memory frees (backpressure).",
             stats.read_paused_connections);
  out.single("ringhub_outbound_queued_bytes", Kind::kGauge, "Bytes waiting in outbound queues now.",
             stats.outbound_queued_bytes);
}

void render_traffic(Exposition& out, const HubStats& stats) {
  out.single("ringhub_frames_in_total", Kind::kCounter, "Complete client frames parsed.", stats.frames_in);
  out.single("ringhub_frames_out_total", Kind::kCounter,
             "Frames queued to clients (replies, deliveries, errors).", stats.frames_out);
  out.single("ringhub_bytes_in_total", Kind::kCounter, "Bytes received from clients.", stats.bytes_in);
  out.single("ringhub_bytes_out_total", Kind::kCounter, "Bytes written to client sockets.", stats.bytes_out);
  out.single("ringhub_relays_total", Kind::kCounter, "RELAY frames accepted.", stats.relays);
  out.single("ringhub_deliveries_total", Kind::kCounter, "DELIVER frames queued.", stats.deliveries);
  out.single("ringhub_skipped_receivers_total", Kind::kCounter,
             "Unknown, departed, duplicate or self receivers skipped.", stats.skipped_receivers);
}

// One series per code 1..8, zeros included: a series that appears only after its first error would
// hide the first increase from rate().
void render_protocol_errors(Exposition& out, const HubStats& stats) {
  constexpr std::string_view kName = "ringhub_protocol_errors_total";
  out.family(kName, Kind::kCounter, "ERROR frames sent, by code.");
  for (std::size_t code = 1; code < kErrorCodeSlots; ++code) {
    const auto name = protocol::error_code_name(static_cast<protocol::ErrorCode>(code));
    const std::string labels =
        "code=\"" + std::to_string(code) + "\",reason=\"" + escape_label_value(snake_case(name)) + "\"";
    out.sample(kName, labels, stats.protocol_errors[code]);
  }
}

void render_pressure(Exposition& out, const HubStats& stats) {
  out.single("ringhub_slow_consumer_closes_total", Kind::kCounter,
             "Connections closed because their outbound queue passed its limit (ERROR 6).",
             stats.slow_consumer_closes);
  out.single("ringhub_server_full_rejects_total", Kind::kCounter,
             "Connections refused at --max-connections (ERROR 7).", stats.server_full_rejects);
  out.single("ringhub_accepted_connections_total", Kind::kCounter, "Connections accepted since start.",
             stats.accepted);
  constexpr std::string_view kCopied = "ringhub_copied_bytes_total";
  out.family(kCopied, Kind::kCounter,
             "Bytes copied in user space, by reason: assembly (frames spanning receive buffers), copy_out "
             "(a frame copied once out of its receive buffer), reply (hub-composed replies), batch (small "
             "deliveries copied into a send batch, per receiver).");
  out.sample(kCopied, R"(reason="assembly")", stats.copied_assembly_bytes);
  out.sample(kCopied, R"(reason="copy_out")", stats.copied_out_bytes);
  out.sample(kCopied, R"(reason="reply")", stats.copied_reply_bytes);
  out.sample(kCopied, R"(reason="batch")", stats.batched_bytes);
  out.single("ringhub_budget_pauses_total", Kind::kCounter,
             "Times a connection's reading was paused because the memory budget was reached.",
             stats.budget_pauses);
  out.single("ringhub_idle_closes_total", Kind::kCounter,
             "Connections closed after sending nothing for their protocol's idle timeout.",
             stats.idle_closes);
  out.single("ringhub_frame_timeouts_total", Kind::kCounter,
             "Connections closed because a frame stayed unfinished past --frame-timeout (ERROR 8).",
             stats.frame_timeouts);
  out.single("ringhub_cq_overflows_total", Kind::kCounter,
             "io_uring completion-queue overflows seen (slow path, no loss).", stats.cq_overflows);
}

void render_line_protocol(Exposition& out, const HubStats& stats) {
  out.single("ringhub_line_forwards_total", Kind::kCounter, "Line-protocol messages forwarded.",
             stats.line_forwards);
  out.single("ringhub_line_reforwards_total", Kind::kCounter,
             "Line-protocol messages forwarded again after a receiver left.", stats.line_reforwards);
  out.single("ringhub_line_unmatched_oks_total", Kind::kCounter,
             "Line-protocol acknowledgements that matched no pending message.", stats.line_unmatched_oks);
  out.single("ringhub_line_protocol_errors_total", Kind::kCounter, "Malformed line-protocol input refused.",
             stats.line_protocol_errors);
}

// Standard process_* names, so stock dashboards find them.
void render_process(Exposition& out, const MetricsExtras& extras) {
  out.single("process_resident_memory_bytes", Kind::kGauge, "Resident memory size in bytes.",
             extras.resident_memory_bytes);
  out.single("process_open_fds", Kind::kGauge, "Number of open file descriptors.", extras.open_fds);
  out.single("ringhub_uptime_seconds", Kind::kGauge, "Seconds since the hub started.", extras.uptime_seconds);
}

}  // namespace

std::string render_metrics(const HubStats& stats, const MetricsExtras& extras) {
  Exposition out;
  render_gauges(out, stats);
  render_traffic(out, stats);
  render_protocol_errors(out, stats);
  render_pressure(out, stats);
  render_line_protocol(out, stats);
  render_process(out, extras);
  return out.take();
}

}  // namespace ringhub
