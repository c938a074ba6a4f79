// Engine: ring set-up, the loop, and the completion handlers of the harness's client sockets:
// socket_direct_alloc -> [bind ->] connect (+ link timeout) -> multishot recv + one send in flight ->
// cancel -> close_direct. A connection is idle again only once every SQE naming it has completed.
#include "perf/stress/engine.hpp"

#include <fmt/format.h>
#include <netinet/tcp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "perf/stress/uring_extra.hpp"
#include "transport/ring_setup.hpp"
#include "transport/uring_compat.hpp"

namespace ringhub::stress {

namespace {

// Submission queue: one loop iteration's SQEs (connects, sends, re-arms); a full SQ submits early.
constexpr unsigned kSqEntries = 4096;
// Completion queue: recv completions are bounded by the buffers, plus sends, connects and closes of
// one iteration. Overflow is a slow path (FEAT_NODROP), and counted.
constexpr unsigned kCqEntries = 65536;
// The loop wakes at least this often to look at the deadline, the abort flag and shared progress.
constexpr std::int64_t kMaxWaitNs = 50'000'000;
// After an abort, how long the engine waits for its closes before it exits regardless.
constexpr std::int64_t kAbortGraceNs = 3'000'000'000;
// Timers fired per iteration at most, so a driver that keeps arming due timers cannot starve the ring.
constexpr unsigned kMaxTimersPerIteration = 65536;
// The provided buffer group of every engine ring (one group per ring).
constexpr unsigned kBufferGroup = 0;
// TCP_NODELAY's value: the kernel reads it when the SQE runs, so it must outlive the SQE.
constexpr int kOne = 1;

__kernel_timespec to_timespec(std::int64_t nanos) {
  return {static_cast<long long>(nanos / 1'000'000'000), static_cast<long long>(nanos % 1'000'000'000)};
}

}  // namespace

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Engine::Engine(EngineConfig config) : config_(std::move(config)), conns_(config_.conns) {
  for (std::uint32_t i = 0; i < conns_.size(); ++i) {
    conns_[i].index = i;
  }
  connect_ts_ = to_timespec(config_.connect_timeout_ns);
}

Engine::~Engine() {
  if (buf_ring_ != nullptr) {
    uring_compat::free_buf_ring(&ring_, buf_ring_, config_.buffer_count, kBufferGroup);
  }
  if (buffers_ != nullptr) {
    munmap(buffers_, std::size_t{config_.buffer_count} * config_.buffer_size);
  }
  if (ring_ready_) {
    io_uring_queue_exit(&ring_);
  }
}

Result<void> Engine::init() {
  if (Result<void> ring = setup_ring(); !ring) {
    return ring;
  }
  return setup_buffers();
}

Result<void> Engine::setup_ring() {
  if (Result<void> ring = setup_issuer_ring(&ring_, kSqEntries, kCqEntries, config_.table_size); !ring) {
    return ring;
  }
  ring_ready_ = true;
  sockopt_ok_ = uring_extra::opcode_supported(&ring_, IORING_OP_URING_CMD);
  return {};
}

Result<void> Engine::setup_buffers() {
  const std::size_t bytes = std::size_t{config_.buffer_count} * config_.buffer_size;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (memory == MAP_FAILED) {
    return make_error(fmt::format("cannot map {} bytes of receive buffers: {}", bytes, std::strerror(errno)));
  }
  buffers_ = static_cast<std::uint8_t*>(memory);
  int error = 0;
  buf_ring_ = uring_compat::setup_buf_ring(&ring_, config_.buffer_count, kBufferGroup, &error);
  if (buf_ring_ == nullptr) {
    return make_error(fmt::format("cannot register a provided buffer ring: {}", std::strerror(-error)),
                      -error);
  }
  for (unsigned bid = 0; bid < config_.buffer_count; ++bid) {
    recycle(static_cast<std::uint16_t>(bid));
  }
  publish_buffers();
  return {};
}

io_uring_sqe* Engine::sqe() {
  return next_sqe(&ring_);
}

void Engine::run(std::int64_t deadline_ns, const std::atomic<bool>& abort) {
  while (true) {
    const std::int64_t now = now_ns();
    if (!aborting_ && (now >= deadline_ns || abort.load(std::memory_order_relaxed))) {
      begin_abort();
    }
    if (aborting_) {
      if (busy_ == 0 || now >= abort_until_) {
        return;
      }
    } else {
      fire_timers(now);
      driver_->on_iteration();
      if (driver_->finished() && busy_ == 0) {
        return;
      }
    }
    flush_all();
    wait(now);
  }
}

void Engine::fire_timers(std::int64_t now) {
  for (unsigned fired = 0; fired < kMaxTimersPerIteration && !timers_.empty(); ++fired) {
    if (timers_.top().due_ns > now) {
      return;
    }
    const Timer timer = timers_.top();
    timers_.pop();
    if (now - timer.due_ns > stats_.max_timer_lag_ns.load(std::memory_order_relaxed)) {
      stats_.max_timer_lag_ns.store(now - timer.due_ns, std::memory_order_relaxed);
    }
    driver_->on_timer(timer);
  }
}

void Engine::wait(std::int64_t now) {
  std::int64_t wait_ns = kMaxWaitNs;
  if (!timers_.empty() && !aborting_) {
    wait_ns = std::clamp<std::int64_t>(timers_.top().due_ns - now, 0, kMaxWaitNs);
  }
  __kernel_timespec ts = to_timespec(wait_ns);
  io_uring_cqe* first = nullptr;
  const int ret = io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
  if (enter_failed(ret)) {
    std::fprintf(stderr, "ringhub-stress: engine %u: io_uring_enter failed: %s\n", config_.index,
                 std::strerror(-ret));
    std::abort();  // the ring itself is broken: an impossible internal state
  }
  reap_completions(&ring_, [this](const io_uring_cqe& cqe) { dispatch(cqe); });
  if (ring_.cq.koverflow != nullptr) {
    stats_.cq_overflows.store(*ring_.cq.koverflow, std::memory_order_relaxed);
  }
}

void Engine::begin_abort() {
  aborting_ = true;
  abort_until_ = now_ns() + kAbortGraceNs;
  for (Conn& conn : conns_) {
    close(conn);
  }
}

void Engine::dispatch(const io_uring_cqe& cqe) {
  const auto op = static_cast<Op>(cqe.user_data & 0xFF);
  Conn& conn = conns_[cqe.user_data >> 8];
  switch (op) {
    case Op::kIgnore: return;
    case Op::kSocket: on_socket(conn, cqe.res); return;
    case Op::kBind:
    case Op::kSockopt:
    case Op::kConnect: on_connect_step(conn, op, cqe.res); return;
    case Op::kRecv: on_recv(conn, cqe); return;
    case Op::kSend: on_send(conn, cqe.res); return;
    case Op::kClose: on_close(conn); return;
  }
  std::fprintf(stderr, "ringhub-stress: completion with unknown tag %#llx\n",
               static_cast<unsigned long long>(cqe.user_data));
  std::abort();
}

void Engine::connect(Conn& conn) {
  if (aborting_ || conn.phase != Phase::kIdle) {
    return;
  }
  conn.phase = Phase::kSocket;
  conn.ending = CloseInfo{};
  conn.close_wanted = false;
  conn.route = route_cursor_++;
  ++busy_;
  io_uring_sqe* entry = sqe();
  // The ring allocates the slot: sockets never enter the process fd table (20000 here).
  io_uring_prep_socket_direct_alloc(entry, AF_INET, SOCK_STREAM, 0, 0);
  io_uring_sqe_set_data64(entry, tag(conn, Op::kSocket));
  ++conn.pending_ops;
}

void Engine::on_socket(Conn& conn, int res) {
  --conn.pending_ops;
  if (res < 0) {
    conn.ending.error = -res;  // ENFILE: the table is full
    conn.phase = Phase::kClosing;
    maybe_finish_close(conn);
    return;
  }
  conn.slot = res;
  if (conn.close_wanted || aborting_) {
    conn.phase = Phase::kClosing;
    maybe_finish_close(conn);
    return;
  }
  start_connect(conn);
}

// [setsockopt] ; [bind ->] connect -> link timeout. The sockopt goes first and unlinked: a link chains
// to the very next SQE.
void Engine::start_connect(Conn& conn) {
  conn.phase = Phase::kConnecting;
  const auto slot = static_cast<unsigned>(conn.slot);
  const sockaddr_in& hub = config_.hubs[conn.route % config_.hubs.size()];
  if (nodelay_active()) {
    set_option(conn, IPPROTO_TCP, TCP_NODELAY);
  }
  if (!config_.sources.empty() && sockopt_ok_) {
    // The port is then picked at connect time for the whole 4-tuple, instead of bind(port 0) searching
    // for a port unused by any socket on the address: that search made 100k connects take minutes.
    set_option(conn, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
  }
  if (!config_.sources.empty()) {
    const sockaddr_in& source = config_.sources[(conn.route / config_.hubs.size()) % config_.sources.size()];
    io_uring_sqe* entry = sqe();
    uring_extra::prep_bind_direct(entry, slot, reinterpret_cast<const sockaddr*>(&source), sizeof source);
    entry->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(entry, tag(conn, Op::kBind));
    ++conn.pending_ops;
  }
  io_uring_sqe* entry = sqe();
  io_uring_prep_connect(entry, conn.slot, reinterpret_cast<const sockaddr*>(&hub), sizeof hub);
  entry->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
  io_uring_sqe_set_data64(entry, tag(conn, Op::kConnect));
  ++conn.pending_ops;
  entry = sqe();
  io_uring_prep_link_timeout(entry, &connect_ts_, 0);
  io_uring_sqe_set_data64(entry, tag(conn, Op::kIgnore));
}

// Sets an int option to 1 on the direct socket. Unlinked and first, so the bind/connect link that
// follows chains to the right SQEs.
void Engine::set_option(Conn& conn, int level, int name) {
  io_uring_sqe* entry = sqe();
  uring_extra::prep_setsockopt_direct(entry, static_cast<unsigned>(conn.slot), level, name, &kOne);
  io_uring_sqe_set_data64(entry, tag(conn, Op::kSockopt));
  ++conn.pending_ops;
}

void Engine::on_connect_step(Conn& conn, Op op, int res) {
  --conn.pending_ops;
  if (op == Op::kSockopt && res < 0 && sockopt_ok_) {
    sockopt_ok_ = false;  // a kernel before 6.7: carry on without TCP_NODELAY / IP_BIND_ADDRESS_NO_PORT
    std::fprintf(stderr,
                 "ringhub-stress: setsockopt through io_uring failed (%s); continuing without "
                 "TCP_NODELAY and IP_BIND_ADDRESS_NO_PORT\n",
                 std::strerror(-res));
  } else if (op == Op::kBind && res < 0) {
    conn.ending.error = -res;  // the root cause: the connect behind it only reports ECANCELED
    stats_.bind_failures.fetch_add(1, std::memory_order_relaxed);
  } else if (op == Op::kConnect && res == 0 && conn.phase == Phase::kConnecting) {
    conn.phase = Phase::kOpen;
    conn.ending.was_open = true;
    stats_.open.fetch_add(1, std::memory_order_relaxed);
    arm_recv(conn);
    driver_->on_connected(conn);
  } else if (op == Op::kConnect && res < 0) {
    stats_.connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (conn.ending.error == 0) {
      conn.ending.error = res == -ECANCELED ? ETIMEDOUT : -res;  // cancelled by the link timeout
    }
    conn.phase = Phase::kClosing;
  }
  maybe_finish_close(conn);
}

void Engine::arm_recv(Conn& conn) {
  io_uring_sqe* entry = sqe();
  io_uring_prep_recv_multishot(entry, conn.slot, nullptr, 0, 0);
  entry->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  entry->buf_group = kBufferGroup;
  io_uring_sqe_set_data64(entry, tag(conn, Op::kRecv));
  conn.recv_armed = true;
  ++conn.pending_ops;
}

void Engine::on_recv(Conn& conn, const io_uring_cqe& cqe) {
  const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    conn.recv_armed = false;
    --conn.pending_ops;
  }
  if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    const auto bid = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    if (cqe.res > 0 && conn.phase == Phase::kOpen) {
      const std::uint8_t* data = buffers_ + std::size_t{bid} * config_.buffer_size;
      driver_->on_bytes(conn, std::span<const std::uint8_t>(data, static_cast<std::size_t>(cqe.res)));
    }
    recycle(bid);  // the driver is done with it: back to the ring at the end of the iteration
  }
  if (cqe.res > 0) {
    if (!more && conn.phase == Phase::kOpen) {
      arm_recv(conn);  // the kernel ended the multishot without an error: keep reading
    }
  } else if (cqe.res == -ENOBUFS) {
    stats_.enobufs.fetch_add(1, std::memory_order_relaxed);
    if (conn.phase == Phase::kOpen && !conn.waiting) {
      conn.waiting = true;  // the bytes wait in the socket; re-armed once buffers are published
      waiting_.push_back(conn.index);
    }
  } else {
    begin_close(conn, cqe.res == 0 ? 0 : -cqe.res, cqe.res == 0);
  }
  maybe_finish_close(conn);
}

void Engine::send(Conn& conn, std::string_view bytes) {
  conn.queued.insert(conn.queued.end(), bytes.begin(), bytes.end());
  flush(conn);
}

void Engine::flush(Conn& conn) {
  if (!conn.dirty) {
    conn.dirty = true;
    dirty_.push_back(conn.index);
  }
}

void Engine::start_send(Conn& conn) {
  if (conn.send_in_flight || conn.phase != Phase::kOpen) {
    return;
  }
  if (conn.sent == conn.sending.size()) {
    if (conn.queued.empty()) {
      return;
    }
    conn.sending.swap(conn.queued);
    conn.queued.clear();
    conn.sent = 0;
  }
  io_uring_sqe* entry = sqe();
  io_uring_prep_send(entry, conn.slot, conn.sending.data() + conn.sent, conn.sending.size() - conn.sent,
                     MSG_NOSIGNAL);
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(conn, Op::kSend));
  conn.send_in_flight = true;
  ++conn.pending_ops;
}

void Engine::on_send(Conn& conn, int res) {
  --conn.pending_ops;
  conn.send_in_flight = false;
  if (res > 0) {
    conn.sent += static_cast<std::size_t>(res);
    if (conn.sent == conn.sending.size() && conn.sending.capacity() > config_.keep_send_capacity) {
      conn.sending = {};
      conn.sent = 0;
    }
  } else if (res < 0 && res != -EAGAIN && res != -EINTR) {
    begin_close(conn, -res, false);  // EPIPE, ECONNRESET; ignored when we cancelled it to close
    maybe_finish_close(conn);
    return;
  }
  if (conn.phase == Phase::kOpen) {
    if (conn.sent < conn.sending.size() || !conn.queued.empty()) {
      flush(conn);  // a short send resumes from where it stopped
    } else {
      driver_->on_drained(conn);
    }
  }
  maybe_finish_close(conn);
}

void Engine::close(Conn& conn) {
  switch (conn.phase) {
    case Phase::kIdle:
    case Phase::kClosing: return;
    case Phase::kSocket:
      conn.close_wanted = true;  // on_socket closes the slot it gets
      conn.ending.requested = true;
      return;
    case Phase::kConnecting: {
      conn.phase = Phase::kClosing;
      conn.ending.requested = true;
      io_uring_sqe* entry = sqe();
      io_uring_prep_cancel64(entry, tag(conn, Op::kConnect), 0);
      io_uring_sqe_set_data64(entry, tag(conn, Op::kIgnore));
      return;
    }
    case Phase::kOpen:
      conn.ending.requested = true;
      begin_close(conn, 0, false);
      return;
  }
}

// Leaves kOpen: cancels the recv and the send in flight; close_direct follows once both have completed.
void Engine::begin_close(Conn& conn, int error, bool eof) {
  if (conn.phase != Phase::kOpen) {
    return;
  }
  conn.phase = Phase::kClosing;
  conn.ending.error = error;
  conn.ending.eof = eof;
  stats_.open.fetch_sub(1, std::memory_order_relaxed);
  if (conn.recv_armed) {
    io_uring_sqe* entry = sqe();
    io_uring_prep_cancel64(entry, tag(conn, Op::kRecv), 0);
    io_uring_sqe_set_data64(entry, tag(conn, Op::kIgnore));
  }
  if (conn.send_in_flight) {
    io_uring_sqe* entry = sqe();
    io_uring_prep_cancel64(entry, tag(conn, Op::kSend), 0);
    io_uring_sqe_set_data64(entry, tag(conn, Op::kIgnore));
  }
}

void Engine::maybe_finish_close(Conn& conn) {
  if (conn.phase != Phase::kClosing || conn.pending_ops != 0 || conn.close_sent) {
    return;
  }
  if (conn.slot < 0) {
    on_close(conn);  // the socket was never created
    return;
  }
  io_uring_sqe* entry = sqe();
  io_uring_prep_close_direct(entry, static_cast<unsigned>(conn.slot));
  io_uring_sqe_set_data64(entry, tag(conn, Op::kClose));
  conn.close_sent = true;
}

void Engine::on_close(Conn& conn) {
  const CloseInfo info = conn.ending;
  conn.slot = -1;
  conn.phase = Phase::kIdle;
  conn.close_sent = false;
  conn.close_wanted = false;
  ++conn.gen;
  conn.queued.clear();
  conn.sending.clear();
  conn.sent = 0;
  if (conn.queued.capacity() > config_.keep_send_capacity) {
    conn.queued = {};
  }
  if (conn.sending.capacity() > config_.keep_send_capacity) {
    conn.sending = {};
  }
  --busy_;
  driver_->on_closed(conn, info);
}

void Engine::recycle(std::uint16_t bid) {
  io_uring_buf_ring_add(buf_ring_, buffers_ + std::size_t{bid} * config_.buffer_size, config_.buffer_size,
                        bid, io_uring_buf_ring_mask(config_.buffer_count), static_cast<int>(recycled_));
  ++recycled_;
}

void Engine::publish_buffers() {
  if (recycled_ > 0) {
    io_uring_buf_ring_advance(buf_ring_, static_cast<int>(recycled_));
    recycled_ = 0;
  }
}

// Before each wait: start the sends queued this iteration, return buffers to the kernel, and re-arm the
// recvs that stopped for lack of them (every buffer is back by now: drivers never hold one).
void Engine::flush_all() {
  for (const std::uint32_t index : dirty_) {
    Conn& conn = conns_[index];
    conn.dirty = false;
    start_send(conn);
  }
  dirty_.clear();
  publish_buffers();
  for (const std::uint32_t index : waiting_) {
    Conn& conn = conns_[index];
    conn.waiting = false;
    if (conn.phase == Phase::kOpen && !conn.recv_armed) {
      arm_recv(conn);
    }
  }
  waiting_.clear();
}

}  // namespace ringhub::stress
