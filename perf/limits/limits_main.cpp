// ringhub-limits: what this box allows at all, the ceilings perf/compare sets relay figures against:
// single-stream loopback TCP throughput (1 MiB and 64 KiB writes) and 1 MiB memcpy bandwidth.
//   ringhub-limits --duration 2 --repeats 3 --json
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "perf/guarded_main.hpp"
#include "perf/limits/loopback.hpp"
#include "perf/limits/memcpy_bandwidth.hpp"

namespace {

using ringhub::Result;
using namespace ringhub::limits;

// 0: every measurement ran; 1: one failed; 2: bad flags (CLI11's own code for parse errors is 105+).
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
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
  bool json = false;
};

struct Measurement {
  std::string key;    // JSON key
  std::string label;  // human-readable line
  std::function<Result<double>()> run;
  std::vector<double> samples;
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
  return {
      {"loopback_1mib_bytes_per_s", "loopback TCP, 1 MiB writes", loopback(kMiB), {}},
      {"loopback_64kib_bytes_per_s", "loopback TCP, 64 KiB writes", loopback(std::size_t{64} * 1024), {}},
      {"memcpy_1mib_hot_bytes_per_s", "memcpy 1 MiB, cache-hot", copy(kMiB), {}},
      {"memcpy_1mib_dram_bytes_per_s",
       fmt::format("memcpy 1 MiB, DRAM ({} MiB sets)", options.dram_set_mib),
       copy(options.dram_set_mib * kMiB),
       {}},
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
    medians += fmt::format("\"{}\":{:.0f},", m.key, median(m.samples));
    samples += fmt::format("{}\"{}\":[{:.0f}]", samples.empty() ? "" : ",", m.key, fmt::join(m.samples, ","));
  }
  return fmt::format(
      "{{{}\"duration_s\":{},\"repeats\":{},\"dram_set_mib\":{},\"sender_cpu\":{},\"receiver_cpu\":{},"
      "\"nproc\":{},\"samples\":{{{}}}}}",
      medians, options.duration_s, options.repeats, options.dram_set_mib, options.sender_cpu,
      options.receiver_cpu, ::sysconf(_SC_NPROCESSORS_ONLN), samples);
}

void print_text(const std::vector<Measurement>& measurements) {
  for (const auto& m : measurements) {
    const auto [low, high] = std::minmax_element(m.samples.begin(), m.samples.end());
    fmt::print("{:<36} {:8.2f} GB/s  (median of {}; {:.2f} .. {:.2f})\n", m.label, median(m.samples) / 1e9,
               m.samples.size(), *low / 1e9, *high / 1e9);
  }
}

}  // namespace

static int run(int argc, char** argv) {
  CLI::App app{"ringhub-limits: single-stream loopback TCP and memcpy bandwidth on this box"};
  Options options;
  add_flags(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? 0 : kExitUsage;
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
