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

struct Measurement {
  std::string key;    // JSON key
  std::string label;  // human-readable line
  std::function<Result<double>()> run;
  std::vector<double> samples;
  Unit unit = kGigabytesPerSecond;
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
    RelayFloorSpec spec{method,
                        options.relay_streams,
                        kMiB,
                        options.duration_s,
                        static_cast<std::uint64_t>(options.duration_s * kMaxLoopbackBytesPerSecond),
                        options.relay_cpu,
                        options.load_cpu};
    return [spec] { return measure_relay_floor(spec); };
  };
  const auto placed = [](int cpu) {
    return cpu < 0 ? std::string("unpinned") : fmt::format("on CPU {}", cpu);
  };
  const std::string relay_where = fmt::format("{} x 1 MiB streams, relay {}, load {}", options.relay_streams,
                                              placed(options.relay_cpu), placed(options.load_cpu));
  return {
      {"loopback_1mib_bytes_per_s", "loopback TCP, 1 MiB writes", loopback(kMiB), {}},
      {"loopback_64kib_bytes_per_s", "loopback TCP, 64 KiB writes", loopback(std::size_t{64} * 1024), {}},
      {"memcpy_1mib_hot_bytes_per_s", "memcpy 1 MiB, cache-hot", copy(kMiB), {}},
      {"memcpy_1mib_dram_bytes_per_s",
       fmt::format("memcpy 1 MiB, DRAM ({} MiB sets)", options.dram_set_mib),
       copy(options.dram_set_mib * kMiB),
       {}},
      {"relay_copy_ns_per_byte",
       fmt::format("relay floor, read/write ({})", relay_where),
       relay(RelayMethod::kCopy),
       {},
       kNanosecondsPerByte},
      {"relay_splice_ns_per_byte",
       fmt::format("relay floor, splice ({})", relay_where),
       relay(RelayMethod::kSplice),
       {},
       kNanosecondsPerByte},
  };
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
    const int decimals = m.unit.json_decimals;
    medians += fmt::format("\"{}\":{:.{}f},", m.key, median(m.samples), decimals);
    std::string values;
    for (const double sample : m.samples) {
      values += fmt::format("{}{:.{}f}", values.empty() ? "" : ",", sample, decimals);
    }
    samples += fmt::format("{}\"{}\":[{}]", samples.empty() ? "" : ",", m.key, values);
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
    width = std::max(width, m.label.size());
  }
  for (const auto& m : measurements) {
    const auto [low, high] = std::minmax_element(m.samples.begin(), m.samples.end());
    const double scale = m.unit.scale;
    fmt::print("{:<{}} {:8.3f} {}  (median of {}; {:.3f} .. {:.3f})\n", m.label, width,
               median(m.samples) * scale, m.unit.name, m.samples.size(), *low * scale, *high * scale);
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
      auto rate = m.run();
      if (!rate) {
        fmt::print(stderr, "ringhub-limits: {}: {}\n", m.label, rate.error().message);
        return kExitFailed;
      }
      m.samples.push_back(*rate);
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
