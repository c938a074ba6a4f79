// Shard: accepting connections and taking them through open -> draining -> closing -> freed. A
// connection is freed only on its close_direct completion, when no SQE still names it.
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/frame_codec.hpp"
#include "transport/large_block_memory.hpp"
#include "transport/op_tag.hpp"
#include "transport/shard.hpp"

namespace ringhub {

void Shard::on_accept(const io_uring_cqe& cqe, Protocol protocol) {
  if (const std::optional<std::uint32_t> slot = acceptor_.on_completion(cqe, protocol)) {
    admit(*slot, protocol);
  }
}

bool Shard::at_capacity(Protocol protocol) const {
  (void)protocol;  // one budget for both protocols: they share the file table
  return relay_.peer_count() + line_.peer_count() >= capacity_;
}

void Shard::admit(std::uint32_t slot, Protocol protocol) {
  auto* conn = new Connection(slot, &assembly_, &memory_);
  all_.push_back(*conn);
  ++conn_objects_;
  if (stopping_) {
    begin_close(*conn);
    return;
  }
  conn->protocol = protocol;
  if (protocol == Protocol::kLine) {
    conn->lines = std::make_unique<LineSplitter>(config_.max_line_bytes);
  }
  const std::size_t before = shared_.live_connections.fetch_add(1, std::memory_order_relaxed);
  if (before >= config_.max_connections || at_capacity(protocol)) {
    shared_.live_connections.fetch_sub(1, std::memory_order_relaxed);
    counters_.server_full_rejects.add(1);
    arm_recv(*conn);  // so the drain sees the client's EOF
    if (protocol == Protocol::kLine) {
      begin_drain(*conn, &linger_ts_, kServerFullLine);
    } else {
      close_with_error(*conn, protocol::ErrorCode::kServerFull);
    }
    return;
  }
  conn->id = shared_.next_id.fetch_add(1, std::memory_order_relaxed);
  conn->registered = true;
  counters_.accepted.add(1);
  if (protocol == Protocol::kLine) {
    line_.add(*conn);
  } else {
    relay_.add(*conn);
  }
  clocks_.note_input(*conn, now_);  // the idle clock starts at the accept
  resume_reading(*conn);
}

void Shard::unregister(Connection& conn) {
  line_.forget(conn);  // a half-closed line connection: no forward or ok reaches it any more
  if (!conn.registered) {
    return;
  }
  conn.registered = false;
  shared_.live_connections.fetch_sub(1, std::memory_order_relaxed);
  if (conn.protocol == Protocol::kLine) {
    line_.remove(conn);
    return;
  }
  relay_.remove(conn);
}

void Shard::SendEventsOnShard::on_unwritable(Connection& conn) {
  shard_.begin_close(conn);
}

void Shard::SendEventsOnShard::on_slow_consumer(Connection& conn) {
  shard_.close_with_error(conn, protocol::ErrorCode::kSlowConsumer);
}

void Shard::SendEventsOnShard::on_send_done(Connection& conn) {
  if (conn.state == ConnState::kDraining) {
    shard_.continue_drain(conn);
  }
  shard_.maybe_finish_close(conn);
}

void Shard::SendEventsOnShard::on_notified(Connection& conn) {
  shard_.maybe_finish_close(conn);
}

void Shard::ClockEventsOnShard::on_frame_timeout(Connection& conn) {
  shard_.close_with_error(conn, protocol::ErrorCode::kFrameTimeout);
}

void Shard::ClockEventsOnShard::on_idle(Connection& conn, std::chrono::milliseconds silent_for) {
  spdlog::debug("shard {}: user {}: idle for {} ms, closing", shard_.index_, conn.id, silent_for.count());
  shard_.begin_drain(conn, &shard_.grace_ts_);  // what is queued for it is still written
}

void Shard::close_with_error(Connection& conn, protocol::ErrorCode code) {
  spdlog::debug("shard {}: user {}: ERROR {} ({}), closing", index_, conn.id, static_cast<int>(code),
                protocol::error_code_name(code));
  counters_.count_error(code);
  if (code == protocol::ErrorCode::kSlowConsumer) {
    counters_.slow_consumer_closes.add(1);
  }
  if (conn.protocol ==
      Protocol::kLine) {  // a line connection that will not read: it gets the line protocol's words
    begin_drain(conn, &linger_ts_, kSlowConsumerLine);
    return;
  }
  scratch_bytes_.clear();
  codec::append_error(scratch_bytes_, code, protocol::error_code_name(code));
  begin_drain(conn, &linger_ts_,
              std::string_view(reinterpret_cast<const char*>(scratch_bytes_.data()), scratch_bytes_.size()));
}

void Shard::begin_drain(Connection& conn, const __kernel_timespec* deadline, std::string_view last_words) {
  if (conn.state != ConnState::kOpen) {
    return;
  }
  unregister(conn);
  drain(conn, deadline, last_words);
}

void Shard::begin_half_closed_line_drain(Connection& conn) {
  if (conn.state != ConnState::kOpen || !conn.registered) {
    return;
  }
  conn.registered = false;
  shared_.live_connections.fetch_sub(1, std::memory_order_relaxed);
  conn.awaits_own_messages = line_.half_close(conn);
  drain(conn, conn.awaits_own_messages ? &own_messages_ts_ : &grace_ts_, {});
}

bool Shard::awaits_own_messages(const Connection& conn) {
  return conn.awaits_own_messages && conn.line_half_closed && conn.line_pending_bytes > 0;
}

void Shard::drain(Connection& conn, const __kernel_timespec* deadline, std::string_view last_words) {
  conn.state = ConnState::kDraining;
  // Its input is discarded from now on and adds no memory: one the gate kept out is read again (until
  // EOF), and a frame it waited to reserve room for is gone.
  const bool paused_by_gate = conn.read_paused;
  gate_.forget(conn);
  conn.assembler.reset();
  ConnectionClocks::forget(conn);
  if (!last_words.empty()) {
    // Keep only what a send in flight points at (whole frames or lines), then the last words.
    const std::size_t before = conn.outbound.queued_bytes();
    conn.outbound.truncate_after(conn.inflight_bytes);
    sender_.forget(before - conn.outbound.queued_bytes());
    send_text(conn, last_words);
  }
  io_uring_sqe* entry = sqe();
  io_uring_prep_timeout(entry, const_cast<__kernel_timespec*>(deadline), 0, 0);
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kConnTimer));
  conn.timer_armed = true;
  ++conn.pending_ops;
  if (paused_by_gate) {
    resume_reading(conn);
  }
  continue_drain(conn);
}

void Shard::continue_drain(Connection& conn) {
  if (conn.state != ConnState::kDraining || conn.shutdown_sent || conn.send_in_flight ||
      !conn.outbound.empty() || awaits_own_messages(conn)) {
    if (conn.state == ConnState::kDraining && !conn.outbound.empty()) {
      sender_.mark_dirty(conn);
    }
    return;
  }
  // Everything is written: send FIN, then wait for the client's EOF (or the deadline).
  io_uring_sqe* entry = sqe();
  io_uring_prep_shutdown(entry, static_cast<int>(conn.slot), SHUT_WR);
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kShutdown));
  conn.shutdown_sent = true;
  ++conn.pending_ops;
}

void Shard::on_shutdown(Connection& conn, const io_uring_cqe& cqe) {
  --conn.pending_ops;
  if (cqe.res < 0 || (!conn.recv_armed && !conn.waiting())) {
    begin_close(conn);  // nothing left to wait for
  }
  maybe_finish_close(conn);
}

void Shard::on_conn_timer(Connection& conn, const io_uring_cqe& cqe) {
  --conn.pending_ops;
  conn.timer_armed = false;
  if (cqe.res == -ETIME) {
    spdlog::debug("shard {}: user {}: drain deadline passed", index_, conn.id);
    begin_close(conn);  // the drain deadline passed
  }
  maybe_finish_close(conn);
}

void Shard::begin_close(Connection& conn) {
  if (conn.state == ConnState::kClosing) {
    return;
  }
  spdlog::debug("shard {}: user {}: closing (was {})", index_, conn.id,
                conn.state == ConnState::kOpen ? "open" : "draining");
  unregister(conn);
  conn.state = ConnState::kClosing;
  gate_.forget(conn);
  conn.dirty_hook.unlink();
  conn.stop_waiting();
  ConnectionClocks::forget(conn);
  uring::cancel_io(loop_.ring(), conn, tag(&conn, conn.recv_op), tag(&conn, Op::kSend));
  if (conn.timer_armed) {
    loop_.ring().remove_timeout(tag(&conn, Op::kConnTimer));
  }
  maybe_finish_close(conn);
}

void Shard::maybe_finish_close(Connection& conn) {
  if (conn.state != ConnState::kClosing || !conn.closable()) {
    return;
  }
  uring::close_stream(loop_.ring(), conn, tag(&conn, Op::kClose));
}

void Shard::on_close(Connection& conn, const io_uring_cqe& cqe) {
  if (cqe.res < 0) {
    spdlog::warn("shard {}: close of slot {} failed: {}", index_, conn.slot, std::strerror(-cqe.res));
  }
  sender_.forget(conn.outbound.queued_bytes());
  --conn_objects_;
  delete &conn;
}

void Shard::on_stop() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  line_.stop();
  acceptor_.stop();
  // Connections already draining (after an ERROR) get the grace too, not their longer linger; a
  // half-closed line client stops waiting for its own messages (nothing more is forwarded).
  for (Connection& conn : all_) {
    if (conn.state == ConnState::kDraining && conn.timer_armed) {
      loop_.ring().update_timeout(tag(&conn, Op::kConnTimer), &grace_ts_);
    }
    if (conn.state == ConnState::kDraining && std::exchange(conn.awaits_own_messages, false)) {
      continue_drain(conn);
    }
  }
  // Flush what is queued for the grace period, then close (each connection's drain deadline).
  for (Registry* registry : {&relay_.peers(), &line_.peers()}) {
    registry->for_each(
        [&](RegistryEntry& entry) { begin_drain(static_cast<Connection&>(entry), &grace_ts_); });
  }
}

void Shard::arm_tick() {
  io_uring_sqe* entry = sqe();
  io_uring_prep_timeout(entry, &tick_ts_, 0, 0);
  io_uring_sqe_set_data64(entry, tag(this, Op::kShardTimer));
  tick_armed_ = true;
}

void Shard::on_tick(const io_uring_cqe&) {
  tick_armed_ = false;
  if (!stopping_) {
    acceptor_.arm_all();  // an accept that failed (file table full, transient error) gets another go
  }
  clocks_.expire(now_);
  sender_.on_tick();
  if (index_ == 0) {
    trim_heap_after_burst();
  }
  if (!counted_finished_) {
    arm_tick();
  }
}

}  // namespace ringhub

namespace ringhub {

namespace {
// The heap is trimmed once the hub's memory has fallen this far below where it stood at the last trim
// (or has fallen at all and is below it: a burst has ended), at most once per kTrimInterval: glibc keeps
// freed chunks below LargeBlockMemory's size in its arenas, and without a trim a burst of them would
// stay in RSS for good.
constexpr std::int64_t kTrimDrop = std::int64_t{32} << 20;
constexpr std::chrono::milliseconds kTrimInterval{1000};
}  // namespace

void Shard::trim_heap_after_burst() {
  const std::int64_t memory = gate_.hub_memory();
  memory_at_last_trim_ = std::max(memory_at_last_trim_, memory);
  const std::int64_t dropped = memory_at_last_trim_ - memory;
  // A large drop, or any drop that leaves the hub nearly idle (the end of a burst).
  const bool worth_it = dropped >= kTrimDrop || (dropped > 0 && memory < kTrimDrop);
  if (!worth_it || now_ - last_trim_ < kTrimInterval) {
    return;
  }
  malloc_trim(0);  // every arena, not just this thread's: the other shards' frees count too
  if (memory < kTrimDrop) {
    LargeBlockMemory::release_cache();  // the burst is over: an idle hub keeps no freed large blocks
  }
  memory_at_last_trim_ = memory;
  last_trim_ = now_;
}

}  // namespace ringhub
