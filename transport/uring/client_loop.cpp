// ClientLoop: ring set-up, the loop, and the completion handlers of the client sockets:
// socket_direct_alloc -> [bind ->] connect (+ link timeout) -> multishot recv + one send in flight ->
// cancel -> close_direct. A connection is idle again only once every SQE naming it has completed.
#include "transport/uring/client_loop.hpp"

#include <fmt/format.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "transport/uring/uring_compat.hpp"

namespace ringhub::uring {

namespace {

// The loop wakes at least this often to look at the deadline, the abort flag and shared progress.
constexpr std::int64_t kMaxWaitNs = 50'000'000;
// After an abort, how long the loop waits for its closes before it exits regardless.
constexpr std::int64_t kAbortGraceNs = 3'000'000'000;
// Timers fired per iteration at most, so a driver that keeps arming due timers cannot starve the ring.
constexpr unsigned kMaxTimersPerIteration = 65536;
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

void size_for_connections(ClientLoopConfig& config) {
  constexpr unsigned kSpareSlots = 4;         // a closing socket's slot may still be held
  constexpr unsigned kSqesPerConnection = 8;  // connect, its options and timeout, recv, send, close...
  constexpr unsigned kMaxEntries = 4096;
  config.table_size = config.conns + kSpareSlots;
  config.sq_entries = std::bit_ceil(std::min(config.conns * kSqesPerConnection, kMaxEntries));
  config.cq_entries = std::max(config.sq_entries * 2, std::bit_ceil(config.buffer_count * 2));
}

ClientLoop::ClientLoop(ClientLoopConfig config)
    : config_(std::move(config)),
      loop_(*this, fmt::format("client loop {}", config_.index)),
      conns_(config_.conns) {
  for (std::uint32_t i = 0; i < conns_.size(); ++i) {
    conns_[i].index = i;
  }
}

ClientLoop::~ClientLoop() = default;

Result<void> ClientLoop::init() {
  if (config_.hubs.empty() || std::any_of(config_.hubs.begin(), config_.hubs.end(),
                                          [](const SocketAddress& a) { return a.length == 0; })) {
    return system_error(EINVAL, "client loop: no address to connect to");
  }
  if (Result<void> loop = loop_.init({.sq_entries = config_.sq_entries,
                                      .cq_entries = config_.cq_entries,
                                      .table_size = config_.table_size,
                                      .task_run = config_.task_run,
                                      .buffer_count = config_.buffer_count,
                                      .buffer_size = config_.buffer_size,
                                      .buffer_residency = config_.buffer_residency});
      !loop) {
    return loop;
  }
  sockopt_ok_ = loop_.ring().supports(IORING_OP_URING_CMD);
  return {};
}

void ClientLoop::run(std::int64_t deadline_ns, const std::atomic<bool>& abort) {
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
    start_sends();
    wait(now);
  }
}

bool ClientLoop::run_until(std::int64_t deadline_ns, const std::function<bool()>& done) {
  while (true) {
    if (done()) {  // before the timers too: a due timer must not act once the caller is satisfied
      return leave_run_until(true);
    }
    const std::int64_t now = now_ns();
    fire_timers(now);
    driver_->on_iteration();
    if (done()) {
      return leave_run_until(true);
    }
    if (deadline_ns >= 0 && now >= deadline_ns) {
      // Out of time, but what is ready is still handled: a zero timeout polls, it does not skip I/O.
      start_sends();
      loop_.poll();
      return leave_run_until(done());
    }
    start_sends();
    wait(now, deadline_ns);
  }
}

// Starts the sends that can start (each connection has one in flight at most) and submits, buffers
// handed back, so nothing the driver queued waits for the caller's next wait.
bool ClientLoop::leave_run_until(bool result) {
  start_sends();
  loop_.submit();
  return result;
}

void ClientLoop::fire_timers(std::int64_t now) {
  for (unsigned fired = 0; fired < kMaxTimersPerIteration && !timers_.empty(); ++fired) {
    if (timers_.top().due_ns > now) {
      return;
    }
    const ClientTimer timer = timers_.top();
    timers_.pop();
    if (now - timer.due_ns > stats_.max_timer_lag_ns.load(std::memory_order_relaxed)) {
      stats_.max_timer_lag_ns.store(now - timer.due_ns, std::memory_order_relaxed);
    }
    driver_->on_timer(timer);
  }
}

// Waits for a completion, at most until the next timer, `until` (when not negative) or kMaxWaitNs.
void ClientLoop::wait(std::int64_t now, std::int64_t until) {
  std::int64_t wait_ns = kMaxWaitNs;
  if (!timers_.empty() && !aborting_) {
    wait_ns = std::clamp<std::int64_t>(timers_.top().due_ns - now, 0, kMaxWaitNs);
  }
  if (until >= 0) {
    wait_ns = std::clamp<std::int64_t>(until - now, 0, wait_ns);
  }
  __kernel_timespec ts = to_timespec(wait_ns);
  loop_.wait(&ts);
  stats_.cq_overflows.store(loop_.ring().cq_overflows(), std::memory_order_relaxed);
}

void ClientLoop::begin_abort() {
  aborting_ = true;
  abort_until_ = now_ns() + kAbortGraceNs;
  for (ClientConn& conn : conns_) {
    close(conn);
  }
}

void ClientLoop::on_completion(const io_uring_cqe& cqe) {
  const auto op = tag_kind<Op>(cqe.user_data);
  if (op == Op::kIgnore) {
    return;  // no owner to name
  }
  ClientConn& conn = *tag_owner<ClientConn>(cqe.user_data);
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
  spdlog::critical("client loop {}: completion with unknown tag {:#x}", config_.index, cqe.user_data);
  std::abort();
}

void ClientLoop::connect(ClientConn& conn) {
  connect(conn, route_cursor_++);
}

void ClientLoop::connect(ClientConn& conn, std::uint32_t route, std::int64_t timeout_ns) {
  if (aborting_ || conn.phase != ConnPhase::kIdle) {
    return;
  }
  conn.phase = ConnPhase::kSocket;
  conn.ending = CloseInfo{};
  conn.close_wanted = false;
  conn.route = route;
  conn.connect_timeout = to_timespec(timeout_ns > 0 ? timeout_ns : config_.connect_timeout_ns);
  ++busy_;
  io_uring_sqe* entry = sqe();
  // The ring allocates the slot: sockets never enter the process fd table (20000 here).
  io_uring_prep_socket_direct_alloc(entry, hub_of(conn).family(), SOCK_STREAM, 0, 0);
  io_uring_sqe_set_data64(entry, tag(conn, Op::kSocket));
  ++conn.pending_ops;
}

void ClientLoop::on_socket(ClientConn& conn, int res) {
  --conn.pending_ops;
  if (res < 0) {
    conn.ending.error = -res;  // ENFILE: the table is full
    conn.phase = ConnPhase::kClosing;
    maybe_finish_close(conn);
    return;
  }
  conn.slot = static_cast<std::uint32_t>(res);
  if (conn.close_wanted || aborting_) {
    conn.phase = ConnPhase::kClosing;
    maybe_finish_close(conn);
    return;
  }
  start_connect(conn);
}

// [setsockopt] ; [bind ->] connect -> link timeout. The sockopt goes first and unlinked: a link chains
// to the very next SQE.
void ClientLoop::start_connect(ClientConn& conn) {
  conn.phase = ConnPhase::kConnecting;
  const unsigned slot = conn.slot;
  const SocketAddress& hub = hub_of(conn);
  const bool bind_source = !config_.sources.empty() && hub.family() == AF_INET;
  if (nodelay_active()) {
    set_option(conn, IPPROTO_TCP, TCP_NODELAY);
  }
  if (bind_source && sockopt_ok_) {
    // The port is then picked at connect time for the whole 4-tuple, instead of bind(port 0) searching
    // for a port unused by any socket on the address: that search made 100k connects take minutes.
    set_option(conn, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
  }
  if (bind_source) {
    const sockaddr_in& source = config_.sources[(conn.route / config_.hubs.size()) % config_.sources.size()];
    io_uring_sqe* entry = sqe();
    uring_compat::prep_bind_direct(entry, slot, reinterpret_cast<const sockaddr*>(&source), sizeof source);
    entry->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(entry, tag(conn, Op::kBind));
    ++conn.pending_ops;
  }
  io_uring_sqe* entry = sqe();
  io_uring_prep_connect(entry, static_cast<int>(conn.slot), hub.get(), hub.length);
  entry->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
  io_uring_sqe_set_data64(entry, tag(conn, Op::kConnect));
  ++conn.pending_ops;
  entry = sqe();
  io_uring_prep_link_timeout(entry, &conn.connect_timeout, 0);
  io_uring_sqe_set_data64(entry, kUnwatched);
}

// Sets an int option to 1 on the direct socket. Unlinked and first, so the bind/connect link that
// follows chains to the right SQEs.
void ClientLoop::set_option(ClientConn& conn, int level, int name) {
  io_uring_sqe* entry = sqe();
  uring_compat::prep_setsockopt_direct(entry, conn.slot, level, name, &kOne);
  io_uring_sqe_set_data64(entry, tag(conn, Op::kSockopt));
  ++conn.pending_ops;
}

void ClientLoop::on_connect_step(ClientConn& conn, Op op, int res) {
  --conn.pending_ops;
  if (op == Op::kSockopt && res < 0 && sockopt_ok_) {
    sockopt_ok_ = false;  // a kernel before 6.7: carry on without TCP_NODELAY / IP_BIND_ADDRESS_NO_PORT
    spdlog::warn(
        "client loop {}: setsockopt through io_uring failed ({}); continuing without TCP_NODELAY and "
        "IP_BIND_ADDRESS_NO_PORT",
        config_.index, std::strerror(-res));
  } else if (op == Op::kBind && res < 0) {
    conn.ending.error = -res;  // the root cause: the connect behind it only reports ECANCELED
    stats_.bind_failures.fetch_add(1, std::memory_order_relaxed);
  } else if (op == Op::kConnect && res == 0 && conn.phase == ConnPhase::kConnecting) {
    conn.phase = ConnPhase::kOpen;
    conn.ending.was_open = true;
    stats_.open.fetch_add(1, std::memory_order_relaxed);
    arm_recv(conn);
    driver_->on_connected(conn);
  } else if (op == Op::kConnect && res < 0) {
    stats_.connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (conn.ending.error == 0) {
      conn.ending.error = res == -ECANCELED ? ETIMEDOUT : -res;  // cancelled by the link timeout
    }
    conn.phase = ConnPhase::kClosing;
  }
  maybe_finish_close(conn);
}

void ClientLoop::arm_recv(ClientConn& conn) {
  uring::arm_recv(loop_.ring(), conn, tag(conn, Op::kRecv));
}

void ClientLoop::on_recv(ClientConn& conn, const io_uring_cqe& cqe) {
  const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    conn.recv_armed = false;
    --conn.pending_ops;
  }
  if ((cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    const auto bid = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    // Dropped at the end of this block: the driver never holds a buffer, so it goes back to the ring
    // at the end of the iteration.
    const BlockRef buffer = loop_.buffers().take(bid);
    if (cqe.res > 0 && conn.phase == ConnPhase::kOpen) {
      driver_->on_bytes(conn,
                        std::span<const std::uint8_t>(buffer.data(), static_cast<std::size_t>(cqe.res)));
    }
  }
  if (cqe.res > 0) {
    if (!more && conn.phase == ConnPhase::kOpen && !conn.read_paused) {
      arm_recv(conn);  // the kernel ended the multishot without an error: keep reading
    }
  } else if (cqe.res == -ENOBUFS) {
    stats_.enobufs.fetch_add(1, std::memory_order_relaxed);
    if (conn.phase == ConnPhase::kOpen) {
      loop_.park_for_buffers(conn);  // re-armed by on_buffers_back
    }
  } else if (cqe.res == -ECANCELED && conn.recv_cancelled) {
    conn.recv_cancelled = false;  // pause_reading stopped it: the bytes wait in the socket
    if (conn.phase == ConnPhase::kOpen && !conn.read_paused) {
      arm_recv(conn);  // resumed while the cancel was on its way
    }
  } else {
    begin_close(conn, cqe.res == 0 ? 0 : -cqe.res, cqe.res == 0);
  }
  maybe_finish_close(conn);
}

void ClientLoop::pause_reading(ClientConn& conn) {
  if (conn.read_paused) {
    return;
  }
  conn.read_paused = true;
  if (conn.phase == ConnPhase::kOpen && conn.recv_armed && !conn.recv_cancelled) {
    conn.recv_cancelled = true;
    loop_.ring().cancel(tag(conn, Op::kRecv));
  }
}

void ClientLoop::resume_reading(ClientConn& conn) {
  if (!conn.read_paused) {
    return;
  }
  conn.read_paused = false;
  if (conn.phase == ConnPhase::kOpen && !conn.recv_armed && !conn.waiting()) {
    arm_recv(conn);  // a cancel still on its way ends the old recv: it is not re-armed twice
  }
}

void ClientLoop::send(ClientConn& conn, std::string_view bytes) {
  conn.queued.insert(conn.queued.end(), bytes.begin(), bytes.end());
  flush(conn);
}

void ClientLoop::flush(ClientConn& conn) {
  if (!conn.dirty) {
    conn.dirty = true;
    dirty_.push_back(conn.index);
  }
}

void ClientLoop::start_send(ClientConn& conn) {
  if (conn.send_in_flight || conn.phase != ConnPhase::kOpen || conn.write_error != 0) {
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
  io_uring_prep_send(entry, static_cast<int>(conn.slot), conn.sending.data() + conn.sent,
                     conn.sending.size() - conn.sent, MSG_NOSIGNAL);
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(conn, Op::kSend));
  conn.send_in_flight = true;
  ++conn.pending_ops;
}

void ClientLoop::on_send(ClientConn& conn, int res) {
  --conn.pending_ops;
  conn.send_in_flight = false;
  if (res > 0) {
    conn.sent += static_cast<std::size_t>(res);
    if (conn.sent == conn.sending.size() && conn.sending.capacity() > config_.keep_send_capacity) {
      conn.sending = {};
      conn.sent = 0;
    }
  } else if (res < 0 && res != -EAGAIN && res != -EINTR) {
    stop_writing(conn, -res);  // EPIPE, ECONNRESET; ignored when we cancelled it to close
    maybe_finish_close(conn);
    return;
  }
  if (conn.phase == ConnPhase::kOpen) {
    if (conn.sent < conn.sending.size() || !conn.queued.empty()) {
      flush(conn);  // a short send resumes from where it stopped
    } else {
      driver_->on_drained(conn);
    }
  }
  maybe_finish_close(conn);
}

// A send failed. When the peer is gone (EPIPE, ECONNRESET), what it sent before it went may still be
// unread (in the socket, or in completions behind this one): reading goes on to its end, which closes
// the connection, since the reset ends it soon. Any other error, or no recv to come, closes now.
void ClientLoop::stop_writing(ClientConn& conn, int error) {
  if (conn.phase != ConnPhase::kOpen) {
    return;
  }
  conn.write_error = error;
  const bool peer_gone = error == EPIPE || error == ECONNRESET;
  if (!peer_gone || (!conn.recv_armed && !conn.waiting() && !conn.read_paused)) {
    begin_close(conn, error, false);
  }
}

void ClientLoop::close(ClientConn& conn) {
  switch (conn.phase) {
    case ConnPhase::kIdle:
    case ConnPhase::kClosing: return;
    case ConnPhase::kSocket:
      conn.close_wanted = true;  // on_socket closes the slot it gets
      conn.ending.requested = true;
      return;
    case ConnPhase::kConnecting: {
      conn.phase = ConnPhase::kClosing;
      conn.ending.requested = true;
      loop_.ring().cancel(tag(conn, Op::kConnect));
      return;
    }
    case ConnPhase::kOpen:
      conn.ending.requested = true;
      begin_close(conn, 0, false);
      return;
  }
}

// Leaves kOpen: cancels the recv and the send in flight; close_direct follows once both have completed.
void ClientLoop::begin_close(ClientConn& conn, int error, bool eof) {
  if (conn.phase != ConnPhase::kOpen) {
    return;
  }
  conn.phase = ConnPhase::kClosing;
  conn.ending.error = conn.write_error != 0 ? conn.write_error : error;  // the first failure
  conn.ending.eof = eof;
  stats_.open.fetch_sub(1, std::memory_order_relaxed);
  conn.stop_waiting();
  cancel_io(loop_.ring(), conn, tag(conn, Op::kRecv), tag(conn, Op::kSend));
  // Nothing in flight (a recv stopped by ENOBUFS or paused, no send): no completion will call it.
  maybe_finish_close(conn);
}

void ClientLoop::maybe_finish_close(ClientConn& conn) {
  if (conn.phase != ConnPhase::kClosing || !conn.closable()) {
    return;
  }
  if (conn.slot == kNoSlot) {
    on_close(conn);  // the socket was never created
    return;
  }
  close_stream(loop_.ring(), conn, tag(conn, Op::kClose));
}

void ClientLoop::on_close(ClientConn& conn) {
  const CloseInfo info = conn.ending;
  conn.slot = kNoSlot;
  conn.phase = ConnPhase::kIdle;
  conn.close_sent = false;
  conn.close_wanted = false;
  conn.read_paused = false;
  conn.recv_cancelled = false;
  conn.write_error = 0;
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

// Before each wait: start the sends queued this iteration (the loop then hands buffers back and
// re-arms the recvs that waited for them).
void ClientLoop::start_sends() {
  for (const std::uint32_t index : dirty_) {
    ClientConn& conn = conns_[index];
    conn.dirty = false;
    start_send(conn);
  }
  dirty_.clear();
}

void ClientLoop::on_buffers_back(Stream& stream) {
  auto& conn = static_cast<ClientConn&>(stream);
  if (conn.phase == ConnPhase::kOpen && !conn.recv_armed && !conn.read_paused) {
    arm_recv(conn);
  }
}

}  // namespace ringhub::uring
