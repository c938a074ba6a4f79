// Hub: sizes the shards to the direct-descriptor limit and the threads to the cores, binds the
// listeners, starts the threads (each drives its shards) and stops them through MSG_RING from a small
// control ring.
#include "transport/hub.hpp"

#include <fmt/format.h>
#include <liburing.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#include "core/prometheus.hpp"
#include "transport/admin_server.hpp"
#include "transport/hash_key.hpp"
#include "transport/large_block_memory.hpp"
#include "transport/listener.hpp"
#include "transport/op_tag.hpp"
#include "transport/shard.hpp"
#include "transport/shard_thread.hpp"
#include "transport/uring/ring.hpp"

namespace ringhub {

namespace {

// Our cap on one ring's file table (the kernel allows 1M): with a huge RLIMIT_NOFILE (Docker's
// --ulimit nofile=1048576) every shard would otherwise pin an 8 MiB table; 64k slots per shard
// already hold 100k connections on two shards.
constexpr rlim_t kMaxTableSize = 1U << 16;
// The control ring sends one MSG_RING at a time.
constexpr unsigned kControlEntries = 8;

// A shard's table: what RLIMIT_NOFILE allows (raised to its hard limit), at most kMaxTableSize.
Result<unsigned> direct_table_size() {
  Result<unsigned> limit = uring::raise_open_file_limit();
  if (!limit) {
    return limit;
  }
  return static_cast<unsigned>(std::min<rlim_t>(*limit, kMaxTableSize));
}

// The opcodes the hub issues; a kernel without one of them cannot run it.
struct NeededOp {
  int opcode;
  const char* name;
};
constexpr NeededOp kNeededOps[] = {
    {IORING_OP_ACCEPT, "ACCEPT"},   {IORING_OP_RECV, "RECV"},
    {IORING_OP_SENDMSG, "SENDMSG"}, {IORING_OP_MSG_RING, "MSG_RING"},
    {IORING_OP_CLOSE, "CLOSE"},     {IORING_OP_SHUTDOWN, "SHUTDOWN"},
    {IORING_OP_TIMEOUT, "TIMEOUT"}, {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
};

// Asks the kernel which opcodes it supports, so a missing one is named at start-up rather than
// failing on the first connection.
Result<void> probe_opcodes(uring::Ring& ring, bool send_zc) {
  std::string missing;
  for (const NeededOp& op : kNeededOps) {
    if (!ring.supports(op.opcode)) {
      missing += fmt::format(" IORING_OP_{}", op.name);
    }
  }
  if (send_zc && !ring.supports(IORING_OP_SENDMSG_ZC)) {
    missing += " IORING_OP_SENDMSG_ZC (asked for by --send-zc)";
  }
  if (!missing.empty()) {
    return make_error(
        fmt::format("this kernel's io_uring lacks:{}; ringhub needs Linux 6.1 or newer", missing));
  }
  return {};
}

// --max-memory 0: a share of physical RAM, so the budget follows the box it runs on.
std::size_t resolve_memory_budget(std::size_t requested) {
  if (requested != 0) {
    return requested;
  }
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) {
    return kDefaultMaxMemory;  // unknown RAM: the default budget
  }
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page_size) / kPhysicalMemoryDivisor;
}

// Heavy senders are paused at the high watermark, but what their multishot recvs had already read is
// stored (never dropped): up to about one receive pool per shard, once more if a stop races a read.
// The reserve above the watermark must hold that, or light clients would find the budget full.
Result<void> check_budget_holds_receive_pools(const HubConfig& config, unsigned shards) {
  const std::size_t pools =
      std::size_t{shards} * std::bit_ceil(config.recv_buffer_count) * config.recv_buffer_size;
  const std::size_t reserve = config.max_memory / MemoryBudget::kReserveDivisor;
  if (reserve < 2 * pools) {
    return usage_error(fmt::format(
        "--max-memory {} is too small for the receive buffers ({} shards x {} buffers x {} bytes): a quarter "
        "of the budget must hold twice the pools, so at least {} bytes; raise --max-memory or lower "
        "--recv-buffers",
        config.max_memory, shards, std::bit_ceil(config.recv_buffer_count), config.recv_buffer_size,
        2 * pools * MemoryBudget::kReserveDivisor));
  }
  return {};
}

// --recv-buffers 0 (the default): kDefaultRecvBufferCount per shard, or the largest power of two that
// lets every shard's pool fit the budget's reserve twice (check_budget_holds_receive_pools), but not
// below kMinAutoRecvBufferCount (that check then says what to raise).
std::uint32_t resolve_recv_buffer_count(const HubConfig& config, unsigned shards) {
  if (config.recv_buffer_count != 0 || config.recv_buffer_size == 0) {
    return config.recv_buffer_count;  // asked for (or no size to divide by: BufferRing refuses it)
  }
  const std::size_t reserve = config.max_memory / MemoryBudget::kReserveDivisor;
  const std::size_t per_shard_pool = reserve / (2 * std::size_t{shards});
  const std::size_t fits = per_shard_pool / config.recv_buffer_size;
  if (fits >= kDefaultRecvBufferCount) {
    return kDefaultRecvBufferCount;
  }
  const std::uint32_t count =
      std::max(kMinAutoRecvBufferCount, static_cast<std::uint32_t>(std::bit_floor(fits)));
  spdlog::info("{} shards share --max-memory {}: {} receive buffers per shard instead of {}", shards,
               config.max_memory, count, kDefaultRecvBufferCount);
  return count;
}

unsigned pick_shard_count(const HubConfig& config, unsigned table_size) {
  if (config.shards != 0) {
    return config.shards;
  }
  const unsigned cores = std::max(1U, std::thread::hardware_concurrency());
  const std::size_t per_shard = shard_planned_connections(table_size);
  const auto needed =
      static_cast<unsigned>((config.max_connections + per_shard - 1) / std::max<std::size_t>(per_shard, 1));
  return std::max(cores, needed);
}

// --max-connections, or what the shards' file tables are planned to hold when that is less (--shards
// given by hand, or a low open-file limit): the hub then says so, and one connection more gets ERROR 7
// as documented, from the tables' slack, instead of waiting unanswered in the listen queue.
std::size_t resolve_max_connections(const HubConfig& config, unsigned shards, unsigned table_size) {
  const std::size_t held = std::size_t{shards} * shard_planned_connections(table_size);
  if (config.max_connections <= held) {
    return config.max_connections;
  }
  spdlog::warn(
      "--max-connections {} is more than {} shard(s) hold ({} descriptors each, from the open-file limit); "
      "accepting at most {} (raise --shards or the open-file limit for more)",
      config.max_connections, shards, table_size, held);
  return held;
}

// Threads follow the cores, shards the descriptor tables: a thread drives several shards when there
// are more shards than cores (transport/shard_thread.hpp).
unsigned pick_thread_count(const HubConfig& config, unsigned shards) {
  const unsigned wanted =
      config.threads != 0 ? config.threads : std::max(1U, std::thread::hardware_concurrency());
  return std::min(wanted, shards);
}

// The shards thread `thread` of `threads` drives: every threads-th index from its own.
std::vector<unsigned> shards_of_thread(unsigned thread, unsigned threads, unsigned shards) {
  std::vector<unsigned> indices;
  for (unsigned i = thread; i < shards; i += threads) {
    indices.push_back(i);
  }
  return indices;
}

}  // namespace

struct Hub::Impl {
  std::unique_ptr<HubShared> shared;
  ListenerSet listeners;       // relay protocol, one per shard
  ListenerSet line_listeners;  // line protocol, one per shard
  std::unique_ptr<AdminServer> admin;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  unsigned thread_count = 0;  // threads.size() while running
  // Probes the kernel at start-up and posts kStop to each shard's ring (MSG_RING) at stop, from
  // whichever thread stops the hub.
  uring::Ring control;
  bool stopped = false;

  ~Impl() {
    close_listeners(listeners);
    close_listeners(line_listeners);
  }
};

Hub::Hub(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hub::~Hub() {
  stop();
}

Result<std::unique_ptr<Hub>> Hub::start(const HubConfig& config) {
  if (config.batch_threshold > kMaxBatchThreshold) {
    return usage_error(fmt::format("--batch-threshold {} is more than one send batch holds ({})",
                                   config.batch_threshold, kMaxBatchThreshold));
  }
  auto table = direct_table_size();
  if (!table) {
    return table.error();
  }
  const unsigned shards = pick_shard_count(config, *table);
  if (shards > IdDirectory::kMaxShards) {
    const std::string why = config.shards != 0
                                ? std::string("requested")
                                : fmt::format("needed for --max-connections {}", config.max_connections);
    return usage_error(
        fmt::format("{} shards {}; at most {} are supported", shards, why, IdDirectory::kMaxShards));
  }
  LargeBlockMemory::install();  // before any block exists: large frames never sit in malloc's arenas
  auto impl = std::make_unique<Impl>();
  if (Result<void> ring = impl->control.init(kControlEntries, kControlEntries, 0, uring::TaskRun::kAnyThread);
      !ring) {
    return ring.error();
  }
  if (auto probed = probe_opcodes(impl->control, config.send_zc); !probed) {
    return probed.error();
  }
  const Keepalive keepalive{config.keepalive_idle, config.keepalive_interval, config.keepalive_count};
  auto listeners = open_listeners(config.bind_address, config.relay_port, shards, "--relay-port", keepalive);
  if (!listeners) {
    return listeners.error();
  }
  impl->listeners = std::move(*listeners);
  auto line_listeners =
      open_listeners(config.bind_address, config.line_port, shards, "--line-port", keepalive);
  if (!line_listeners) {
    return line_listeners.error();
  }
  impl->line_listeners = std::move(*line_listeners);
  HubConfig resolved = config;
  resolved.max_memory = resolve_memory_budget(config.max_memory);
  resolved.max_connections = resolve_max_connections(config, shards, *table);
  resolved.recv_buffer_count = resolve_recv_buffer_count(resolved, shards);
  if (auto fits = check_budget_holds_receive_pools(resolved, shards); !fits) {
    return fits.error();
  }
  auto x_key = draw_hash_key();
  if (!x_key) {
    return x_key.error();
  }
  impl->shared = std::make_unique<HubShared>(resolved, shards, *table, 2 * resolved.max_connections, *x_key);

  // spdlog builds its default logger lazily, inside libspdlog, on the first log call. Built here, before
  // any shard thread, it happens-before every shard's first line by thread creation; otherwise shards
  // race to build it behind a static guard that TSan cannot see in the uninstrumented library.
  spdlog::default_logger_raw();

  // Each thread builds its shards' rings itself (SINGLE_ISSUER), reports each, then waits for the
  // others before driving them.
  const unsigned threads = pick_thread_count(config, shards);
  impl->thread_count = threads;
  std::vector<std::promise<Result<int>>> ready(shards);
  std::promise<bool> go;
  std::shared_future<bool> go_signal = go.get_future().share();
  for (unsigned t = 0; t < threads; ++t) {
    impl->threads.emplace_back([shared = impl->shared.get(), indices = shards_of_thread(t, threads, shards),
                                &listeners = impl->listeners, &line_listeners = impl->line_listeners, &ready,
                                go_signal] {
      std::vector<std::unique_ptr<Shard>> owned;
      std::vector<Shard*> driven;
      bool all_ready = true;
      const uring::TaskRun task_run =
          indices.size() == 1 ? uring::TaskRun::kDeferred : uring::TaskRun::kCooperative;
      for (const unsigned i : indices) {
        owned.push_back(std::make_unique<Shard>(*shared, i, listeners.fds[i], line_listeners.fds[i]));
        Result<void> init = owned.back()->init(task_run);
        ready[i].set_value(init ? Result<int>(owned.back()->ring_fd()) : Result<int>(init.error()));
        all_ready = all_ready && static_cast<bool>(init);
        driven.push_back(owned.back().get());
      }
      if (all_ready && go_signal.get()) {
        drive_shards(driven);
      }
    });
  }
  std::optional<Error> failure;
  for (unsigned i = 0; i < shards; ++i) {
    Result<int> fd = ready[i].get_future().get();
    if (fd) {
      impl->shared->ring_fds[i] = *fd;
    } else if (!failure) {
      failure = fd.error();
    }
  }
  go.set_value(!failure);
  if (failure) {
    for (auto& thread : impl->threads) {
      thread.join();
    }
    impl->stopped = true;
    return *failure;
  }
  std::unique_ptr<Hub> hub(new Hub(std::move(impl)));
  if (config.admin_enabled) {
    Hub* self = hub.get();
    auto admin =
        AdminServer::start(config.bind_address, config.admin_port, [self] { return self->metrics_text(); });
    if (!admin) {
      hub->stop();
      return admin.error();
    }
    hub->impl_->admin = std::move(*admin);
  }
  return hub;
}

std::uint16_t Hub::line_port() const {
  return impl_->line_listeners.port;
}
std::uint16_t Hub::admin_port() const {
  return impl_->admin ? impl_->admin->port() : 0;
}

std::string Hub::metrics_text() const {
  const HubStats s = stats();
  MetricsExtras extras;
  extras.resident_memory_bytes = read_resident_memory_bytes();
  extras.open_fds = count_open_fds();
  extras.uptime_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - impl_->started).count();
  return render_metrics(s, extras);
}

std::uint16_t Hub::relay_port() const {
  return impl_->listeners.port;
}
unsigned Hub::shard_count() const {
  return impl_->shared->shard_count;
}
unsigned Hub::thread_count() const {
  return impl_->thread_count;
}
std::size_t Hub::max_connections() const {
  return impl_->shared->config.max_connections;
}

HubStats Hub::stats() const {
  HubStats total;
  for (const ShardCounters& counters : impl_->shared->counters) {
    counters.add_to(total);
  }
  // A block charged on one shard may be released on another: only the sum is meaningful.
  total.memory_in_use = static_cast<std::uint64_t>(std::max<std::int64_t>(impl_->shared->memory_in_use(), 0));
  total.memory_budget = impl_->shared->budget.limit();
  total.memory_reserved = static_cast<std::uint64_t>(
      std::max<std::int64_t>(impl_->shared->frame_reservations.load(std::memory_order_relaxed), 0));
  total.memory_block_cache = LargeBlockMemory::cached_bytes();
  total.memory_small_block_cache = HeapBlock::small_block_cache_bytes();
  return total;
}

void Hub::stop_listening() const {
  ringhub::stop_listening(impl_->listeners);
  ringhub::stop_listening(impl_->line_listeners);
}

void Hub::stop() {
  if (!impl_ || impl_->stopped) {
    return;
  }
  impl_->stopped = true;
  if (impl_->admin) {
    impl_->admin->stop();
  }
  uring::Ring& control = impl_->control;
  for (const int fd : impl_->shared->ring_fds) {
    io_uring_prep_msg_ring(control.next_sqe(), fd, 0, tag(nullptr, Op::kStop), 0);
    if (const int ret = control.submit_and_wait(); uring::enter_failed(ret)) {
      spdlog::error("cannot signal a shard to stop: {}", std::strerror(-ret));
      continue;
    }
    control.reap([](const io_uring_cqe& cqe) {
      if (cqe.res < 0) {
        spdlog::error("cannot signal a shard to stop: {}", std::strerror(-cqe.res));
      }
    });
  }
  for (auto& thread : impl_->threads) {
    thread.join();
  }
  impl_->threads.clear();
}

}  // namespace ringhub
