// run_stress: engine threads, the monitor loop and the hub's zero-state check; see run.hpp.
#include "perf/stress/run.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <ctime>
#include <future>
#include <memory>
#include <random>
#include <thread>

#include "perf/loadgen/server_probe.hpp"
#include "perf/stress/line_driver.hpp"
#include "perf/stress/relay_driver.hpp"
#include "perf/stress/stall_watch.hpp"

namespace ringhub::stress {

namespace {

// The monitor's tick: how quickly it sees finished threads, relay completion and signals.
constexpr std::int64_t kTickNs = 100'000'000;
constexpr std::int64_t kProgressEveryNs = 1'000'000'000;
// Engines start this long after the last one is ready, so all share one start time.
constexpr std::int64_t kStartDelayNs = 20'000'000;
// How long the hub gets, after the last close, to show zero state in /metrics.
constexpr std::int64_t kZeroStateWaitNs = 10'000'000'000;
// Each GET /metrics may take this long (the admin plane answers even when the shards are busy).
constexpr std::chrono::milliseconds kMetricsTimeout{2000};
// Past the deadline, engines close and exit on their own; past this much more the monitor stops waiting.
constexpr std::int64_t kDeadlineGraceNs = 10'000'000'000;

struct Worker {
  std::unique_ptr<LineDriver> line;
  std::unique_ptr<RelayDriver> relay;
  Tally tally;
  std::promise<std::string> ready;  // empty: the ring is up
  std::atomic<bool> finished{false};
  std::thread thread;
};

struct Shared {
  LineSettings line;
  RelaySettings relay;
  std::unique_ptr<RelayShared> relay_state;
  std::atomic<bool> abort{false};
  std::promise<std::int64_t> start;  // -1: do not run
  std::shared_future<std::int64_t> start_future = start.get_future().share();
};

void worker_main(Worker& w, const RunPlan& plan, Shared& shared) {
  const Result<void> init = w.line ? w.line->init() : w.relay->init();
  w.ready.set_value(init ? std::string() : init.error().message);
  const std::int64_t start_ns = shared.start_future.get();
  if (init && start_ns >= 0) {
    if (w.line) {
      w.line->run(start_ns, start_ns + plan.deadline_ns, shared.abort);
    } else {
      w.relay->run(start_ns, start_ns + plan.deadline_ns, shared.abort);
    }
  }
  w.finished.store(true, std::memory_order_release);
}

// The worker's engine figures; null until its ring is up (read after start_workers).
const uring::ClientLoopStats* stats_of(const Worker& w) {
  return w.line ? w.line->stats() : w.relay->stats();
}

// The engine's harness sizes for one thread of the run: its table, every source address, populated
// receive buffers, and a ring that holds one iteration's connects for thousands of clients.
void size_for_the_run(const RunPlan& plan, unsigned index, client::LoopOptions& loop) {
  loop.loop_index = index;
  loop.table_size = plan.table_size;
  loop.recv_buffers = plan.buffer_count;
  loop.recv_buffer_size = plan.buffer_size;
  loop.buffer_residency = uring::BufferRing::Residency::kPopulated;
  loop.sources = plan.sources;
  loop.sq_entries = uring::ClientLoopConfig{}.sq_entries;
  loop.cq_entries = uring::ClientLoopConfig{}.cq_entries;
}

client::AsyncRelayOptions relay_options(const RunPlan& plan, unsigned index, std::uint32_t clients) {
  client::AsyncRelayOptions options;
  size_for_the_run(plan, index, options);
  options.connections = clients;
  options.hubs.assign(plan.hubs.begin(), plan.hubs.end());
  options.connect_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(plan.timeout_ns));
  return options;
}

client::AsyncLineOptions line_options(const RunPlan& plan, unsigned index, std::uint32_t clients) {
  client::AsyncLineOptions options;
  size_for_the_run(plan, index, options);
  options.clients = clients;
  options.hubs.assign(plan.hubs.begin(), plan.hubs.end());
  options.connect_timeout_ns = plan.timeout_ns;
  return options;
}

void make_settings(const RunPlan& plan, Shared& shared) {
  std::vector<std::string> hubs;
  for (const sockaddr_in& hub : plan.hubs) {
    hubs.push_back(address_text(hub));
  }
  shared.line = LineSettings{plan.ok_delay,
                             plan.timeout_ns,
                             plan.retries,
                             plan.ramp_ns,
                             fmt::format("{:x}", plan.seed & 0xFFFFFFFFFFFF),
                             fmt::format("{}", fmt::join(hubs, ","))};
  shared.relay = RelaySettings{plan.clients, plan.relays,  plan.max_size, plan.max_fanout,
                               plan.retries, plan.ramp_ns, plan.seed};
  if (plan.mode == Mode::kRelay) {
    shared.relay_state = std::make_unique<RelayShared>(plan.clients);
    shared.relay_state->in_flight.set_limit(plan.max_in_flight);
    std::vector<std::uint32_t> order(plan.clients);
    for (std::uint32_t i = 0; i < plan.clients; ++i) {
      order[i] = i;
    }
    std::mt19937_64 rng(plan.seed);
    std::shuffle(order.begin(), order.end(), rng);
    for (std::uint32_t i = 0; i < plan.senders; ++i) {
      shared.relay_state->is_sender[order[i]] = 1;
    }
  }
}

std::vector<std::unique_ptr<Worker>> make_workers(const RunPlan& plan, Shared& shared) {
  std::vector<std::unique_ptr<Worker>> workers;
  std::uint32_t first = 0;
  for (unsigned i = 0; i < plan.threads; ++i) {
    const std::uint32_t count = plan.clients / plan.threads + (i < plan.clients % plan.threads ? 1 : 0);
    auto w = std::make_unique<Worker>();
    if (plan.mode == Mode::kLine) {
      w->line = std::make_unique<LineDriver>(line_options(plan, i, count), shared.line, first, w->tally,
                                             plan.seed ^ (std::uint64_t{i} * 0x9E37U));
    } else {
      w->relay = std::make_unique<RelayDriver>(relay_options(plan, i, count), shared.relay,
                                               *shared.relay_state, first, w->tally);
    }
    first += count;
    workers.push_back(std::move(w));
  }
  return workers;
}

// Starts every thread and waits for every ring; returns the first set-up error, if any.
std::string start_workers(std::vector<std::unique_ptr<Worker>>& workers, const RunPlan& plan,
                          Shared& shared) {
  for (auto& w : workers) {
    w->thread = std::thread(worker_main, std::ref(*w), std::cref(plan), std::ref(shared));
  }
  std::string error;
  for (auto& w : workers) {
    std::string message = w->ready.get_future().get();
    if (error.empty() && !message.empty()) {
      error = std::move(message);
    }
  }
  return error;
}

bool all_finished(const std::vector<std::unique_ptr<Worker>>& workers) {
  for (const auto& w : workers) {
    if (!w->finished.load(std::memory_order_acquire)) {
      return false;
    }
  }
  return true;
}

// Live numbers, summed over engines.
struct Live {
  std::uint64_t started = 0, open = 0, in_flight = 0, done = 0, failed = 0, retries = 0;
  std::uint64_t identified = 0, relays_sent = 0, verified = 0;
};

Live gather(const std::vector<std::unique_ptr<Worker>>& workers) {
  Live live;
  for (const auto& w : workers) {
    const Tally& t = w->tally;
    live.started += t.started.load(std::memory_order_relaxed);
    if (const uring::ClientLoopStats* stats = stats_of(*w)) {
      live.open += stats->open.load(std::memory_order_relaxed);
    }
    live.in_flight += t.in_flight.load(std::memory_order_relaxed);
    live.done += t.done.load(std::memory_order_relaxed);
    live.failed += t.failed.load(std::memory_order_relaxed);
    live.retries += t.retries.load(std::memory_order_relaxed);
    live.identified += t.identified.load(std::memory_order_relaxed);
    live.relays_sent += t.relays_sent.load(std::memory_order_relaxed);
    live.verified += t.verified.load(std::memory_order_relaxed);
  }
  return live;
}

class Monitor {
 public:
  Monitor(const RunPlan& plan, Shared& shared, const std::vector<std::unique_ptr<Worker>>& workers,
          RunOutcome& outcome)
      : plan_(plan),
        shared_(shared),
        workers_(workers),
        outcome_(outcome),
        metrics_(plan.admin, kMetricsTimeout),
        stall_(plan.timeout_ns) {
    for (const sockaddr_in& hub : plan.hubs) {
      hub_ports_.push_back(ntohs(hub.sin_port));
    }
  }

  void watch(std::int64_t start_ns) {
    std::int64_t next_progress = start_ns + kProgressEveryNs;
    while (!all_finished(workers_)) {
      wait_tick();
      const std::int64_t now = uring::now_ns();
      outcome_.harness_peak_open = std::max(outcome_.harness_peak_open, gather(workers_).open);
      if (plan_.mode == Mode::kRelay) {
        check_relay(now);
      }
      if (now > start_ns + plan_.deadline_ns + kDeadlineGraceNs) {
        shared_.abort.store(true);
      }
      if (now >= next_progress) {
        progress(now - start_ns);
        next_progress += kProgressEveryNs;
      }
    }
  }

 private:
  void wait_tick() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    const timespec tick{0, kTickNs};
    if (sigtimedwait(&signals, nullptr, &tick) > 0) {
      outcome_.interrupted = true;
      shared_.abort.store(true);
    }
  }

  // All planned, all written, all arrived: close. Nothing new for --timeout while the kernel holds no
  // bytes for the clients in the hub's sockets: close anyway (a stall).
  void check_relay(std::int64_t now) {
    RelayShared& r = *shared_.relay_state;
    if (r.close_now.load() || r.planners_done.load(std::memory_order_acquire) < plan_.threads) {
      stall_.restart(now);
      return;
    }
    const Live live = gather(workers_);
    const std::uint64_t arrived = r.deliveries_verified.load();
    const bool complete =
        live.relays_sent == r.relays_planned.load() && arrived >= r.deliveries_expected.load();
    const bool stalled = !complete &&
                         stall_.quiet(now, arrived + live.relays_sent + r.bytes_received.load()) &&
                         !in_flight(now);
    if (complete || stalled) {
      outcome_.stalled = stalled;
      if (plan_.admin_enabled) {  // before anyone closes: what the hub still holds for them
        if (auto snapshot = metrics_.fetch()) {
          outcome_.hub.at_close = *snapshot;
        }
      }
      r.close_now.store(true, std::memory_order_release);
    }
  }

  // Whether TCP still holds bytes for the clients in the hub's sockets (it is delivering them, at the
  // pace of its loss recovery); if so the watch waits another timeout.
  bool in_flight(std::int64_t now) {
    const std::optional<std::uint64_t> held = kernel_send_queue_bytes(hub_ports_);
    if (!held || *held == 0) {
      return false;
    }
    ++outcome_.kernel_waits;
    outcome_.kernel_wait_peak_bytes = std::max(outcome_.kernel_wait_peak_bytes, *held);
    stall_.still_in_flight(now);
    return true;
  }

  void sample_kernel_memory() {
    const std::optional<KernelTcpMemory> now = read_kernel_tcp_memory();
    if (now && (!outcome_.tcp_peak || now->pages > outcome_.tcp_peak->pages)) {
      outcome_.tcp_peak = now;
    }
  }

  void progress(std::int64_t elapsed) {
    sample_kernel_memory();
    std::string hub;
    if (plan_.admin_enabled) {
      auto snapshot = metrics_.fetch();
      if (snapshot) {
        const double conns =
            snapshot->value(plan_.mode == Mode::kLine ? metric::kLineConnections : metric::kRelayConnections);
        outcome_.hub.peak_connections = std::max(outcome_.hub.peak_connections, conns);
        hub = fmt::format(" | hub conns {:.0f} pending {:.0f}", conns, snapshot->value(metric::kLinePending));
      } else {
        hub = " | hub /metrics: " + snapshot.error().message;
      }
    }
    if (plan_.quiet) {
      return;
    }
    const Live l = gather(workers_);
    const double t = static_cast<double>(elapsed) / 1e9;
    if (plan_.mode == Mode::kLine) {
      fmt::print(stderr, "[{:7.1f}s] started {} open {} in-flight {} done {} failed {} retries {}{}\n", t,
                 l.started, l.open, l.in_flight, l.done, l.failed, l.retries, hub);
    } else {
      const RelayShared& r = *shared_.relay_state;
      fmt::print(
          stderr,
          "[{:7.1f}s] started {} open {} identified {} relays {}/{} verified {}/{} done {} failed {}{}\n", t,
          l.started, l.open, l.identified, l.relays_sent, r.relays_planned.load(), l.verified,
          r.deliveries_expected.load(), l.done, l.failed, hub);
    }
  }

  const RunPlan& plan_;
  Shared& shared_;
  const std::vector<std::unique_ptr<Worker>>& workers_;
  RunOutcome& outcome_;
  MetricsClient metrics_;
  StallWatch stall_;
  std::vector<std::uint16_t> hub_ports_;
};

std::optional<double> hub_cpu_seconds(int pid) {
  const std::optional<perf::ServerSample> sample = perf::sample_server(pid);
  return sample ? std::optional<double>(sample->cpu_s) : std::nullopt;
}

// Waits up to kZeroStateWaitNs for the gauges of this mode to read zero.
void check_zero_state(const RunPlan& plan, HubReport& hub) {
  const MetricsClient client(plan.admin, kMetricsTimeout);
  const std::string& conns = plan.mode == Mode::kLine ? metric::kLineConnections : metric::kRelayConnections;
  const std::int64_t until = uring::now_ns() + kZeroStateWaitNs;
  while (true) {
    auto snapshot = client.fetch();
    if (snapshot) {
      hub.end = *snapshot;
      const double c = snapshot->value(conns);
      const double pending = snapshot->value(metric::kLinePending);
      const double queued = snapshot->value(metric::kOutboundQueued);
      hub.zero_detail = fmt::format("{} {:.0f}, {} {:.0f}, {} {:.0f}", conns, c, metric::kLinePending,
                                    pending, metric::kOutboundQueued, queued);
      hub.zero_state = c == 0 && queued == 0 && (plan.mode == Mode::kRelay || pending == 0);
    } else {
      hub.zero_detail = "GET /metrics failed: " + snapshot.error().message;
    }
    if (hub.zero_state || uring::now_ns() >= until) {
      hub.metrics = hub.metrics && snapshot.ok();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void collect(const RunPlan& plan, const Shared& shared, const std::vector<std::unique_ptr<Worker>>& workers,
             RunOutcome& outcome) {
  for (const auto& w : workers) {
    outcome.totals.add(w->tally);
    if (const uring::ClientLoopStats* stats = stats_of(*w)) {
      outcome.totals.add(*stats);
    }
  }
  if (plan.mode == Mode::kRelay) {
    outcome.relays_planned = shared.relay_state->relays_planned.load();
    outcome.deliveries_expected = shared.relay_state->deliveries_expected.load();
    outcome.bytes_expected = shared.relay_state->bytes_expected.load();
  }
  if (const auto self = read_process_memory(getpid())) {
    outcome.harness_peak_rss = self->peak_rss;
  }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    outcome.harness_cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                            static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  }
  if (plan.mode == Mode::kRelay) {
    std::vector<const RelayDriver*> drivers;
    drivers.reserve(workers.size());
    for (const auto& w : workers) {
      drivers.push_back(w->relay.get());
    }
    outcome.audit = audit_relays(drivers, plan.clients, outcome.run_start_ns);
  }
}

}  // namespace

RunOutcome run_stress(const RunPlan& plan) {
  RunOutcome outcome;
  if (plan.admin_enabled) {
    auto start = MetricsClient(plan.admin, kMetricsTimeout).fetch();
    if (!start) {
      outcome.failures.push_back(
          fmt::format("cannot read http://{}/metrics: {} (start the hub, or --admin off)", plan.admin_text,
                      start.error().message));
      return outcome;
    }
    outcome.hub.start = *start;
    outcome.hub.metrics = true;
  }
  if (plan.hub_pid > 0) {
    outcome.hub.memory_start = read_process_memory(plan.hub_pid);
    outcome.hub.cpu_start = hub_cpu_seconds(plan.hub_pid);
  }
  outcome.tcp_start = read_kernel_tcp_counters();
  Shared shared;
  make_settings(plan, shared);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, shared);
  const std::string error = start_workers(workers, plan, shared);
  const std::int64_t start_ns = error.empty() ? uring::now_ns() + kStartDelayNs : -1;
  shared.start.set_value(start_ns);
  if (!error.empty()) {
    for (auto& w : workers) {
      w->thread.join();
    }
    outcome.failures.push_back("engine set-up failed: " + error);
    return outcome;
  }
  outcome.run_start_ns = start_ns;
  outcome.ran = true;
  Monitor(plan, shared, workers, outcome).watch(start_ns);
  for (auto& w : workers) {
    w->thread.join();
  }
  outcome.run_end_ns = uring::now_ns();
  outcome.tcp_end = read_kernel_tcp_counters();
  collect(plan, shared, workers, outcome);
  if (plan.admin_enabled) {
    check_zero_state(plan, outcome.hub);
  }
  if (plan.hub_pid > 0) {
    outcome.hub.memory_end = read_process_memory(plan.hub_pid);
    outcome.hub.cpu_end = hub_cpu_seconds(plan.hub_pid);
  }
  return outcome;
}

}  // namespace ringhub::stress
