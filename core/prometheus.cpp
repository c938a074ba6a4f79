// Renders HubStats and MetricsExtras as Prometheus text; see core/prometheus.hpp. The families come in
// the order of the RINGHUB_STATS table (core/stats.hpp), then the process figures, so a scrape diff
// reads cleanly.
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

// Appends families and samples to one string. Names and help texts are our own constants, so only
// label values (which come from other tables) are escaped.
class Exposition {
 public:
  void family(std::string_view name, MetricType type, std::string_view help) {
    append("# HELP ", name, " ", help, "\n");
    append("# TYPE ", name, type == MetricType::kCounter ? " counter\n" : " gauge\n");
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
  void single(std::string_view name, MetricType type, std::string_view help, T value) {
    family(name, type, help);
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

// One series per code 1..8, zeros included: a series that appears only after its first error would
// hide the first increase from rate().
void render_samples(Exposition& out, std::string_view name, std::string_view /*labels*/,
                    const CountsByErrorCode& counts) {
  for (std::size_t code = 1; code < kErrorCodeSlots; ++code) {
    const auto reason = protocol::error_code_name(static_cast<protocol::ErrorCode>(code));
    const std::string labels =
        "code=\"" + std::to_string(code) + "\",reason=\"" + escape_label_value(snake_case(reason)) + "\"";
    out.sample(name, labels, counts[code]);
  }
}

void render_samples(Exposition& out, std::string_view name, std::string_view labels, Count value) {
  out.sample(name, labels, value);
}

// Renders one RINGHUB_STATS row: its family's HELP and TYPE first when the row opens a family.
class StatsRenderer {
 public:
  explicit StatsRenderer(Exposition& out) : out_(out) {}

  template <class Shape>
  void row(std::string_view name, MetricType type, std::string_view labels, std::string_view help,
           const Shape& value) {
    if (name.empty()) {
      return;  // not exported
    }
    if (name != family_) {
      out_.family(name, type, help);
      family_ = name;
    }
    render_samples(out_, name, labels, value);
  }

 private:
  Exposition& out_;
  std::string_view family_;  // the family whose HELP and TYPE are written last
};

void render_stats(Exposition& out, const HubStats& stats) {
  StatsRenderer renderer(out);
#define RINGHUB_STATS_RENDER(field, shape, filler, type, name, labels, help) \
  renderer.row(name, MetricType::type, labels, help, stats.field);
  RINGHUB_STATS(RINGHUB_STATS_RENDER)
#undef RINGHUB_STATS_RENDER
}

// Standard process_* names, so stock dashboards find them.
void render_process(Exposition& out, const MetricsExtras& extras) {
  out.single("process_resident_memory_bytes", MetricType::kGauge, "Resident memory size in bytes.",
             extras.resident_memory_bytes);
  out.single("process_open_fds", MetricType::kGauge, "Number of open file descriptors.", extras.open_fds);
  out.single("ringhub_uptime_seconds", MetricType::kGauge, "Seconds since the hub started.",
             extras.uptime_seconds);
}

}  // namespace

std::string render_metrics(const HubStats& stats, const MetricsExtras& extras) {
  Exposition out;
  render_stats(out, stats);
  render_process(out, extras);
  return out.take();
}

}  // namespace ringhub
