// ringhub-limits: what this box allows at all, the ceilings perf/compare sets relay figures against:
// single-stream loopback TCP throughput (1 MiB and 64 KiB writes), 1 MiB memcpy bandwidth, and the
// relay floor (the CPU per byte of a relay that only moves bytes, by copying or by splice).
//   ringhub-limits --duration 2 --repeats 3 --json
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "apps/cli_checks.hpp"
#include "perf/guarded_main.hpp"
#include "perf/limits/loopback.hpp"
#include "perf/limits/memcpy_bandwidth.hpp"

namespace {

using ringhub::Result;
using namespace ringhub::limits;

// 0: every measurement ran; 1: one failed; 2: bad flags (CLI11's own code for parse errors is 105+).
constexpr int kExitFailed = 1;
constexpr std::size_t kMiB = 1U << 20;
// A byte budget per loopback repetition no loopback reaches in the planned time (64 GiB/s), so the
// duration is what ends a run, yet a run is bounded by bytes too.
constexpr double kMaxLoopbackBytesPerSecond = 64.0 * 1024 * kMiB;

struct Options {
  double duration_s = 2.0;  // per repetition of each measurement
  unsigned repeats = 3;
  std::size_t dram_set_mib = 256;  // the DRAM copy rotates over source and destination sets this large
  int sender_cpu = -1;             // loopback threads; -1: unpinned
  int receiver_cpu = -1;
  int relay_cpu = -1;  // the relay floor's relay threads, and its writers and readers; -1: unpinned
  int load_cpu = -1;   // (perf/compare pins them as it pins a server and ringhub-perf: 0 and 1)
  unsigned relay_streams = 4;
  bool json = false;
};

struct Unit {
  const char* name;
  double scale;       // printed value = measured value * scale
  int json_decimals;  // of the measured value in the JSON: whole bytes/s, fractions of a nanosecond
};
constexpr Unit kGigabytesPerSecond{"GB/s", 1e-9, 0};
constexpr Unit kNanosecondsPerByte{"ns/B", 1.0, 4};

// One figure a measurement yields, with a sample per repetition.
struct Figure {
  std::string key;    // JSON key
  std::string label;  // human-readable line
  Unit unit = kGigabytesPerSecond;
  std::vector<double> samples;
};

// One measurement, repeated; each run yields one value per figure, in the figures' order.
struct Measurement {
  std::function<Result<std::vector<double>>()> run;
  std::vector<Figure> figures;
};

void add_flags(CLI::App& app, Options& options) {
  app.add_option("--duration", options.duration_s, "Seconds per repetition of each measurement")
      ->check(CLI::PositiveNumber);
  app.add_option("--repeats", options.repeats, "Repetitions of each measurement; the median is reported")
      ->check(CLI::Range(1U, 100U));
  app.add_option("--dram-set-mib", options.dram_set_mib,
                 "MiB the DRAM memcpy rotates over (source and destination each)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));
  app.add_option("--sender-cpu", options.sender_cpu, "Pin the loopback sender thread to this CPU (-1: no)");
  app.add_option("--receiver-cpu", options.receiver_cpu,
                 "Pin the loopback receiver thread to this CPU (-1: no)");
  app.add_option("--relay-cpu", options.relay_cpu,
                 "The relay floor's relay threads run on this CPU (-1: unpinned)")
      ->check(CLI::Range(-1, 1023));
  app.add_option("--load-cpu", options.load_cpu,
                 "The relay floor's writers and readers run on this CPU (-1: unpinned)")
      ->check(CLI::Range(-1, 1023));
  app.add_option("--relay-streams", options.relay_streams,
                 "Paths through the relay floor's relay (perf/compare's publisher count)")
      ->check(CLI::Range(1U, 64U));
  app.add_flag("--json", options.json, "Print one JSON object instead of text");
}

// A measurement of one figure, from a function that returns just that value.
template <typename Measure>
Measurement single(std::string key, std::string label, Unit unit, Measure measure) {
  return {[measure]() -> Result<std::vector<double>> {
            Result<double> value = measure();
            if (!value) {
              return value.error();
            }
            return std::vector<double>{*value};
          },
          {{std::move(key), std::move(label), unit, {}}}};
}

// The relay floor by one method: the relay's CPU per byte (the floor), the writers' and readers'
// CPU per byte, and the bytes relayed per second.
// `method` names its JSON keys and `name` its lines.
Measurement relay_floor(const RelayFloorSpec& spec, std::string_view method, std::string_view name,
                        const std::string& where) {
  return {[spec]() -> Result<std::vector<double>> {
            Result<RelayFloor> floor = measure_relay_floor(spec);
            if (!floor) {
              return floor.error();
            }
            return std::vector<double>{floor->relay_ns_per_byte, floor->load_ns_per_byte, floor->bytes_per_s};
          },
          {{fmt::format("relay_{}_ns_per_byte", method),
            fmt::format("relay floor, {}: relay CPU per byte ({})", name, where),
            kNanosecondsPerByte,
            {}},
           {fmt::format("relay_{}_load_ns_per_byte", method),
            fmt::format("relay floor, {}: writers' and readers' CPU per byte", name),
            kNanosecondsPerByte,
            {}},
           {fmt::format("relay_{}_bytes_per_s", method),
            fmt::format("relay floor, {}: bytes relayed", name),
            kGigabytesPerSecond,
            {}}}};
}

std::vector<Measurement> plan(const Options& options) {
  const auto loopback = [options](std::size_t write_size) {
    LoopbackSpec spec{write_size, options.duration_s,
                      static_cast<std::uint64_t>(options.duration_s * kMaxLoopbackBytesPerSecond),
                      options.sender_cpu, options.receiver_cpu};
    return [spec] { return measure_loopback(spec); };
  };
  const auto copy = [options](std::size_t set_bytes) {
    CopySpec spec{kMiB, set_bytes, options.duration_s};
    return [spec] { return measure_memcpy(spec); };
  };
  const auto relay = [options](RelayMethod method) {
    return RelayFloorSpec{method,
                          options.relay_streams,
                          kMiB,
                          options.duration_s,
                          static_cast<std::uint64_t>(options.duration_s * kMaxLoopbackBytesPerSecond),
                          options.relay_cpu,
                          options.load_cpu};
  };
  const auto placed = [](int cpu) {
    return cpu < 0 ? std::string("unpinned") : fmt::format("on CPU {}", cpu);
  };
  const std::string relay_where = fmt::format("{} x 1 MiB streams, relay {}, load {}", options.relay_streams,
                                              placed(options.relay_cpu), placed(options.load_cpu));
  std::vector<Measurement> measurements;
  measurements.push_back(
      single("loopback_1mib_bytes_per_s", "loopback TCP, 1 MiB writes", kGigabytesPerSecond, loopback(kMiB)));
  measurements.push_back(single("loopback_64kib_bytes_per_s", "loopback TCP, 64 KiB writes",
                                kGigabytesPerSecond, loopback(std::size_t{64} * 1024)));
  measurements.push_back(
      single("memcpy_1mib_hot_bytes_per_s", "memcpy 1 MiB, cache-hot", kGigabytesPerSecond, copy(kMiB)));
  measurements.push_back(single("memcpy_1mib_dram_bytes_per_s",
                                fmt::format("memcpy 1 MiB, DRAM ({} MiB sets)", options.dram_set_mib),
                                kGigabytesPerSecond, copy(options.dram_set_mib * kMiB)));
  measurements.push_back(relay_floor(relay(RelayMethod::kCopy), "copy", "read/write", relay_where));
  measurements.push_back(relay_floor(relay(RelayMethod::kSplice), "splice", "splice", relay_where));
  return measurements;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

std::string json_report(const Options& options, const std::vector<Measurement>& measurements) {
  std::string medians;
  std::string samples;
  for (const auto& m : measurements) {
    for (const Figure& f : m.figures) {
      const int decimals = f.unit.json_decimals;
      medians += fmt::format("\"{}\":{:.{}f},", f.key, median(f.samples), decimals);
      std::string values;
      for (const double sample : f.samples) {
        values += fmt::format("{}{:.{}f}", values.empty() ? "" : ",", sample, decimals);
      }
      samples += fmt::format("{}\"{}\":[{}]", samples.empty() ? "" : ",", f.key, values);
    }
  }
  return fmt::format(
      "{{{}\"duration_s\":{},\"repeats\":{},\"dram_set_mib\":{},\"sender_cpu\":{},\"receiver_cpu\":{},"
      "\"relay_cpu\":{},\"load_cpu\":{},\"relay_streams\":{},\"nproc\":{},\"samples\":{{{}}}}}",
      medians, options.duration_s, options.repeats, options.dram_set_mib, options.sender_cpu,
      options.receiver_cpu, options.relay_cpu, options.load_cpu, options.relay_streams,
      ::sysconf(_SC_NPROCESSORS_ONLN), samples);
}

void print_text(const std::vector<Measurement>& measurements) {
  std::size_t width = 0;
  for (const auto& m : measurements) {
    for (const Figure& f : m.figures) {
      width = std::max(width, f.label.size());
    }
  }
  for (const auto& m : measurements) {
    for (const Figure& f : m.figures) {
      const auto [low, high] = std::minmax_element(f.samples.begin(), f.samples.end());
      const double scale = f.unit.scale;
      fmt::print("{:<{}} {:8.3f} {}  (median of {}; {:.3f} .. {:.3f})\n", f.label, width,
                 median(f.samples) * scale, f.unit.name, f.samples.size(), *low * scale, *high * scale);
    }
  }
}

}  // namespace

static int run(int argc, char** argv) {
  CLI::App app{"ringhub-limits: loopback TCP, memcpy bandwidth and the relay floor on this box"};
  Options options;
  add_flags(app, options);
  if (const std::optional<int> exit_status = ringhub::cli::parse_command_line(app, argc, argv)) {
    return *exit_status;
  }
  auto measurements = plan(options);
  for (auto& m : measurements) {
    for (unsigned i = 0; i < options.repeats; ++i) {
      auto values = m.run();
      if (!values) {
        fmt::print(stderr, "ringhub-limits: {}: {}\n", m.figures.front().label, values.error().message);
        return kExitFailed;
      }
      for (std::size_t f = 0; f < m.figures.size(); ++f) {
        m.figures[f].samples.push_back((*values)[f]);
      }
    }
  }
  if (options.json) {
    fmt::print("{}\n", json_report(options, measurements));
  } else {
    print_text(measurements);
  }
  return 0;
}

int main(int argc, char** argv) {
  return ringhub::guarded_main("ringhub-limits", run, argc, argv);
}
