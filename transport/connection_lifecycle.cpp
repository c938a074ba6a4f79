// ConnectionLifecycle: drains, closes and frees a shard's connections; see
// transport/connection_lifecycle.hpp. A connection is freed only on its close_direct completion.
#include "transport/connection_lifecycle.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/frame_codec.hpp"
#include "core/line_protocol.hpp"
#include "transport/connection_clocks.hpp"
#include "transport/op_tag.hpp"

namespace ringhub {

ConnectionLifecycle::ConnectionLifecycle(const Context& context)
    : ring_(context.ring),
      shard_index_(context.shard_index),
      counters_(context.counters),
      live_connections_(context.live_connections),
      sender_(context.sender),
      gate_(context.gate),
      events_(context.events),
      linger_ts_(to_kernel_timespec(kErrorLinger)),
      grace_ts_(to_kernel_timespec(context.shutdown_grace)),
      own_messages_ts_(to_kernel_timespec(std::min(kOwnMessagesWait, context.shutdown_grace))) {}

Connection& ConnectionLifecycle::create(std::uint32_t slot, AssemblyAccounting* assembly,
                                        MemoryAccount* memory) {
  auto* conn = new Connection(slot, assembly, memory);
  all_.push_back(*conn);
  ++objects_;
  return *conn;
}

bool ConnectionLifecycle::try_register(Connection& conn, std::size_t max_connections, bool shard_full) {
  const std::size_t before = live_connections_.fetch_add(1, std::memory_order_relaxed);
  if (before >= max_connections || shard_full) {
    live_connections_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  conn.registered = true;
  ++registered_;
  return true;
}

void ConnectionLifecycle::unregister(Connection& conn) {
  const bool was_registered = std::exchange(conn.registered, false);
  if (was_registered) {
    live_connections_.fetch_sub(1, std::memory_order_relaxed);
    --registered_;
  }
  events_.leave_services(conn, was_registered);
}

const __kernel_timespec* ConnectionLifecycle::timespec_of(DrainDeadline deadline) const {
  switch (deadline) {
    case DrainDeadline::kLinger: return &linger_ts_;
    case DrainDeadline::kGrace: return &grace_ts_;
    case DrainDeadline::kOwnMessages: return &own_messages_ts_;
  }
  return &grace_ts_;
}

void ConnectionLifecycle::close_with_error(Connection& conn, protocol::ErrorCode code) {
  spdlog::debug("shard {}: user {}: ERROR {} ({}), closing", shard_index_, conn.id, static_cast<int>(code),
                protocol::error_code_name(code));
  counters_.count_error(code);
  if (code == protocol::ErrorCode::kSlowConsumer) {
    counters_.slow_consumer_closes.add(1);
  }
  // A slow consumer is closed for what is queued: that goes. Any other error leaves the client owed what
  // the hub queued before it (replies to the requests before the offending frame, deliveries).
  const QueuedBytes queued =
      code == protocol::ErrorCode::kSlowConsumer ? QueuedBytes::kDropped : QueuedBytes::kWritten;
  if (conn.protocol == Protocol::kLine) {  // a line connection that will not read: the line protocol's words
    begin_drain(conn, DrainDeadline::kLinger,
                code == protocol::ErrorCode::kFrameTimeout ? kLineTimeoutLine : kSlowConsumerLine, queued);
    return;
  }
  error_frame_.clear();
  codec::append_error(error_frame_, code, protocol::error_code_name(code));
  begin_drain(conn, DrainDeadline::kLinger,
              std::string_view(reinterpret_cast<const char*>(error_frame_.data()), error_frame_.size()),
              queued);
}

void ConnectionLifecycle::begin_drain(Connection& conn, DrainDeadline deadline, std::string_view last_words,
                                      QueuedBytes queued) {
  if (conn.state != ConnState::kOpen) {
    return;
  }
  unregister(conn);
  drain(conn, deadline, last_words, queued);
}

void ConnectionLifecycle::begin_half_closed_line_drain(Connection& conn) {
  if (conn.state != ConnState::kOpen || !conn.registered) {
    return;
  }
  conn.registered = false;
  live_connections_.fetch_sub(1, std::memory_order_relaxed);
  --registered_;
  conn.awaits_own_messages = events_.half_close_line(conn);
  drain(conn, conn.awaits_own_messages ? DrainDeadline::kOwnMessages : DrainDeadline::kGrace, {},
        QueuedBytes::kWritten);
}

bool ConnectionLifecycle::awaits_own_messages(const Connection& conn) {
  return conn.awaits_own_messages && conn.line_half_closed && conn.line_pending_bytes > 0;
}

void ConnectionLifecycle::drain(Connection& conn, DrainDeadline deadline, std::string_view last_words,
                                QueuedBytes queued) {
  conn.state = ConnState::kDraining;
  // Its input is discarded from now on and adds no memory: one the gate kept out is read again (until
  // EOF), and a frame it waited to reserve room for is gone.
  const bool paused_by_gate = conn.read_paused;
  gate_.forget(conn);
  conn.assembler.reset();
  ConnectionClocks::forget(conn);
  if (queued == QueuedBytes::kDropped) {
    // Keep only what a send in flight points at (whole frames or lines): the last words follow it.
    const std::size_t before = conn.outbound.queued_bytes();
    conn.outbound.truncate_after(conn.inflight_bytes);
    sender_.forget(before - conn.outbound.queued_bytes());
  }
  if (!last_words.empty()) {
    send_text(conn, last_words);
  }
  arm_deadline(conn, timespec_of(stopping_ ? DrainDeadline::kGrace : deadline));
  if (paused_by_gate) {
    events_.resume_reading(conn);
  }
  continue_drain(conn);
}

void ConnectionLifecycle::arm_deadline(Connection& conn, const __kernel_timespec* after) {
  io_uring_sqe* entry = ring_.next_sqe();
  io_uring_prep_timeout(entry, const_cast<__kernel_timespec*>(after), 0, 0);
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kConnTimer));
  conn.timer_armed = true;
  conn.written_at_deadline = conn.bytes_written;
  ++conn.pending_ops;
}

bool ConnectionLifecycle::still_reading(const Connection& conn) const {
  const bool owed = conn.send_in_flight || !conn.outbound.empty();
  return !stopping_ && conn.state == ConnState::kDraining && owed &&
         conn.bytes_written > conn.written_at_deadline;
}

void ConnectionLifecycle::continue_drain(Connection& conn) {
  if (conn.state != ConnState::kDraining || conn.shutdown_sent || conn.send_in_flight ||
      !conn.outbound.empty() || awaits_own_messages(conn)) {
    if (conn.state == ConnState::kDraining && !conn.outbound.empty()) {
      sender_.mark_dirty(conn);
    }
    return;
  }
  // Everything is written: send FIN, then wait for the client's EOF (or the deadline).
  io_uring_sqe* entry = ring_.next_sqe();
  io_uring_prep_shutdown(entry, static_cast<int>(conn.slot), SHUT_WR);
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kShutdown));
  conn.shutdown_sent = true;
  ++conn.pending_ops;
}

void ConnectionLifecycle::send_text(Connection& conn, std::string_view text) {
  const std::span bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (!sender_.enqueue_copy(conn, bytes, CopyReason::kReply)) {
    begin_close(conn);  // out of memory: this connection cannot be answered
  }
}

void ConnectionLifecycle::on_shutdown(Connection& conn, const io_uring_cqe& cqe) {
  --conn.pending_ops;
  if (cqe.res < 0 || (!conn.recv_armed && !conn.waiting())) {
    begin_close(conn);  // nothing left to wait for
  }
  maybe_finish_close(conn);
}

void ConnectionLifecycle::on_timer(Connection& conn, const io_uring_cqe& cqe) {
  --conn.pending_ops;
  conn.timer_armed = false;
  if (cqe.res == -ETIME && still_reading(conn)) {
    arm_deadline(conn, &grace_ts_);
  } else if (cqe.res == -ETIME) {
    spdlog::debug("shard {}: user {}: drain deadline passed", shard_index_, conn.id);
    begin_close(conn);
  }
  maybe_finish_close(conn);
}

void ConnectionLifecycle::begin_close(Connection& conn) {
  if (conn.state == ConnState::kClosing) {
    return;
  }
  spdlog::debug("shard {}: user {}: closing (was {})", shard_index_, conn.id,
                conn.state == ConnState::kOpen ? "open" : "draining");
  unregister(conn);
  conn.state = ConnState::kClosing;
  gate_.forget(conn);
  conn.dirty_hook.unlink();
  conn.stop_waiting();
  ConnectionClocks::forget(conn);
  uring::cancel_io(ring_, conn, tag(&conn, conn.recv_op), tag(&conn, Op::kSend));
  if (conn.hangup_watch) {
    ring_.cancel(tag(&conn, Op::kHangupWatch));
  }
  if (conn.timer_armed) {
    ring_.remove_timeout(tag(&conn, Op::kConnTimer));
  }
  maybe_finish_close(conn);
}

void ConnectionLifecycle::maybe_finish_close(Connection& conn) {
  if (conn.state != ConnState::kClosing || !conn.closable()) {
    return;
  }
  uring::close_stream(ring_, conn, tag(&conn, Op::kClose));
}

void ConnectionLifecycle::on_close(Connection& conn, const io_uring_cqe& cqe) {
  if (cqe.res < 0) {
    spdlog::warn("shard {}: close of slot {} failed: {}", shard_index_, conn.slot, std::strerror(-cqe.res));
  }
  sender_.forget(conn.outbound.queued_bytes());
  --objects_;
  delete &conn;
}

void ConnectionLifecycle::stop() {
  stopping_ = true;
  for (Connection& conn : all_) {
    if (conn.state == ConnState::kDraining && conn.timer_armed) {
      ring_.update_timeout(tag(&conn, Op::kConnTimer), &grace_ts_);
    }
    if (conn.state == ConnState::kDraining && std::exchange(conn.awaits_own_messages, false)) {
      continue_drain(conn);
    }
  }
}

}  // namespace ringhub
