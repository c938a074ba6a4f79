// run_bench and run_idle: engine configuration, threads and deadlines around the drivers.
#include "perf/loadgen/perf_run.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "perf/loadgen/idle_driver.hpp"
#include "transport/uring/ring.hpp"

namespace ringhub::perf {

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kConnectTimeoutNs = 5 * kSecond;
constexpr std::int64_t kGreetingTimeoutNs = 10 * kSecond;
// Past every phase's own limit, the engine's hard deadline.
constexpr std::int64_t kDeadlineSlackNs = 15 * kSecond;
constexpr unsigned kBenchBuffers = 512;
// A publisher's send buffers are kept up to this size: reallocating (and faulting in) a few MiB per
// send would make the load generator, not the server, the bottleneck for large messages.
constexpr std::size_t kKeepPublishBuffer = std::size_t{64} << 20;
// Idle mode: connections per engine (its direct-descriptor table must stay under RLIMIT_NOFILE, 20000
// here) and per source address. bind(port 0) searches the ephemeral range (28232 ports) for a free
// port, which gets slow as it fills (100k over 5 sources took 260 s, over 20 a few seconds), and TIME_WAIT
// leftovers of the previous run hold ports for 60 s: one address per 5000, as ringhub-stress does.
constexpr std::uint32_t kIdlePerEngine = 18'000;
constexpr std::uint32_t kIdlePerSource = 5'000;
constexpr std::uint32_t kIdleConnecting = 256;  // per engine, between connect and greeting answer
constexpr unsigned kIdleBuffers = 256;
constexpr std::uint32_t kIdleBufferSize = 4096;
// Idle mode gives up when no connection has been confirmed or failed for this long.
constexpr std::int64_t kIdleStallNs = 5 * kSecond;
// After the last confirmation, memory settles (allocator, lazily touched pages) for this long.
constexpr std::chrono::milliseconds kIdleSettle{1000};
constexpr std::chrono::milliseconds kPollEvery{20};

std::int64_t seconds_ns(double seconds) {
  return static_cast<std::int64_t>(seconds * 1e9);
}

BenchSettings bench_settings(const PerfOptions& o) {
  BenchSettings s;
  s.target = o.target;
  s.publishers = o.publishers;
  s.fanout = o.fanout;
  s.size = o.size;
  s.warmup_ns = seconds_ns(o.warmup_s);
  s.duration_ns = seconds_ns(o.duration_s);
  s.rate = o.rate;
  s.window = o.window;
  s.checksum = o.checksum;
  s.server_pid = o.server_pid;
  s.stall_ns = seconds_ns(o.stall_s);
  s.drain_timeout_ns = seconds_ns(o.drain_s);
  s.greeting_timeout_ns = kGreetingTimeoutNs;
  return s;
}

Result<void> raise_files() {
  if (auto limit = uring::raise_open_file_limit(); !limit) {
    return make_error(limit.error().message);
  }
  return {};
}

}  // namespace

Result<BenchResult> run_bench(const PerfOptions& o, const std::atomic<bool>& abort) {
  if (auto raised = raise_files(); !raised) {
    return raised.error();
  }
  uring::ClientLoopConfig config;
  config.conns = o.fanout + o.publishers;
  config.table_size = config.conns + 8;
  config.buffer_count = kBenchBuffers;
  config.buffer_size = o.buffer_kib * 1024;
  config.hubs = {o.address};
  config.connect_timeout_ns = kConnectTimeoutNs;
  config.keep_send_capacity = kKeepPublishBuffer;
  uring::ClientLoop engine(config);
  if (auto init = engine.init(); !init) {
    return init.error();
  }
  BenchDriver driver(engine, bench_settings(o));
  engine.set_driver(&driver);
  driver.start();
  const std::int64_t deadline = uring::now_ns() + kGreetingTimeoutNs + seconds_ns(o.warmup_s + o.duration_s) +
                                seconds_ns(o.drain_s + o.stall_s) + kDeadlineSlackNs;
  engine.run(deadline, abort);
  if (!driver.finished()) {
    driver.result().errors.emplace_back(abort ? "interrupted" : "the run passed its hard deadline");
  }
  return std::move(driver.result());
}

namespace {

struct IdleWorker {
  std::unique_ptr<uring::ClientLoop> engine;
  std::unique_ptr<IdleDriver> driver;
  std::string init_error;
  std::thread thread;
};

std::vector<sockaddr_in> idle_sources(std::uint32_t connections) {
  std::vector<sockaddr_in> sources;
  const std::uint32_t count = (connections + kIdlePerSource - 1) / kIdlePerSource;
  for (std::uint32_t i = 1; count > 1 && i <= count; ++i) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_addr.s_addr = htonl((127U << 24) | i);  // 127.0.0.i, port chosen by the kernel
    sources.push_back(source);
  }
  return sources;
}

std::vector<std::unique_ptr<IdleWorker>> make_idle_workers(const PerfOptions& o, IdleShared& shared) {
  const std::uint32_t engines =
      std::max<std::uint32_t>(1, (o.idle_conns + kIdlePerEngine - 1) / kIdlePerEngine);
  const std::vector<sockaddr_in> sources = idle_sources(o.idle_conns);
  std::vector<std::unique_ptr<IdleWorker>> workers;
  for (std::uint32_t e = 0; e < engines; ++e) {
    uring::ClientLoopConfig config;
    config.index = e;
    config.conns = o.idle_conns / engines + (e < o.idle_conns % engines ? 1 : 0);
    config.table_size = config.conns + 8;
    config.buffer_count = kIdleBuffers;
    config.buffer_size = kIdleBufferSize;
    config.hubs = {o.address};
    config.sources = sources;
    config.connect_timeout_ns = kConnectTimeoutNs;
    auto worker = std::make_unique<IdleWorker>();
    worker->engine = std::make_unique<uring::ClientLoop>(config);
    worker->driver = std::make_unique<IdleDriver>(*worker->engine, o.target, kIdleConnecting, shared);
    workers.push_back(std::move(worker));
  }
  return workers;
}

// Main's side of the idle run: waits for every connection to be confirmed or failed (or for progress to
// stop), lets memory settle and reads the server's RSS.
void watch_idle(const PerfOptions& o, IdleShared& shared, IdleResult& result, std::int64_t started,
                const std::atomic<bool>& abort) {
  std::uint64_t last_seen = 0;
  std::int64_t last_change = started;
  while (!abort.load()) {
    const std::uint64_t settled = shared.confirmed.load() + shared.failed.load();
    const std::int64_t now = uring::now_ns();
    if (settled >= o.idle_conns) {
      break;
    }
    if (settled != last_seen) {
      last_seen = settled;
      last_change = now;
    } else if (now - last_change > kIdleStallNs) {
      const std::lock_guard lock(shared.errors_mutex);
      shared.errors.push_back(fmt::format("no connection confirmed or failed for {} s; stopped at {}",
                                          kIdleStallNs / kSecond, shared.confirmed.load()));
      break;
    }
    std::this_thread::sleep_for(kPollEvery);
  }
  result.opened = shared.confirmed.load();
  result.failed = shared.failed.load();
  const std::int64_t last = shared.last_confirm_ns.load();
  result.seconds_to_open = last > started ? static_cast<double>(last - started) / 1e9 : 0;
  std::this_thread::sleep_for(kIdleSettle);
  result.after = sample_server(o.server_pid);
}

}  // namespace

Result<IdleResult> run_idle(const PerfOptions& o, const std::atomic<bool>& abort) {
  if (auto raised = raise_files(); !raised) {
    return raised.error();
  }
  IdleShared shared;
  IdleResult result;
  result.requested = o.idle_conns;
  result.before = sample_server(o.server_pid);
  auto workers = make_idle_workers(o, shared);
  const std::int64_t started = uring::now_ns();
  const std::int64_t deadline = started + 600 * kSecond;  // watch_idle ends far sooner; this bounds it
  for (auto& w : workers) {
    w->thread = std::thread([&w, &abort, deadline] {
      if (auto init = w->engine->init(); !init) {
        w->init_error = init.error().message;
        return;
      }
      w->engine->set_driver(w->driver.get());
      w->driver->start();
      w->engine->run(deadline, abort);
    });
  }
  watch_idle(o, shared, result, started, abort);
  shared.close_now.store(true);
  for (auto& w : workers) {
    w->thread.join();
    if (!w->init_error.empty()) {
      shared.errors.push_back(w->init_error);
    }
  }
  result.errors = std::move(shared.errors);
  return result;
}

}  // namespace ringhub::perf
