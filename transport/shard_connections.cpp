// Shard: admitting accepted connections to a service, stopping, and the shard's tick. What a
// connection goes through from then on (drain, close, free) is transport/connection_lifecycle.
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <vector>

#include "transport/large_block_memory.hpp"
#include "transport/op_tag.hpp"
#include "transport/shard.hpp"

namespace ringhub {

void Shard::on_accept(const io_uring_cqe& cqe, Protocol protocol) {
  if (const std::optional<std::uint32_t> slot = acceptor_.on_completion(cqe, protocol)) {
    admit(*slot, protocol);
    if (lifecycle_.objects() >= shared_.table_size) {
      acceptor_.wait_for_room();  // the last slot is taken: the next client waits rather than drops
    }
  }
}

bool Shard::at_capacity(Protocol protocol) const {
  (void)protocol;  // one budget for both protocols: they share the file table
  return relay_.peer_count() + line_.peer_count() >= capacity_;
}

void Shard::admit(std::uint32_t slot, Protocol protocol) {
  Connection& conn = lifecycle_.create(slot, &assembly_, &memory_);
  if (stopping_) {
    lifecycle_.begin_close(conn);
    return;
  }
  conn.protocol = protocol;
  if (protocol == Protocol::kLine) {
    conn.lines = std::make_unique<LineSplitter>(config_.max_line_bytes);
  }
  if (!lifecycle_.try_register(conn, config_.max_connections, at_capacity(protocol))) {
    counters_.server_full_rejects.add(1);
    read_.arm_recv(conn);  // so the drain sees the client's EOF
    if (protocol == Protocol::kLine) {
      lifecycle_.begin_drain(conn, DrainDeadline::kLinger, kServerFullLine);
    } else {
      lifecycle_.close_with_error(conn, protocol::ErrorCode::kServerFull);
    }
    return;
  }
  conn.id = shared_.next_id.fetch_add(1, std::memory_order_relaxed);
  counters_.accepted.add(1);
  if (protocol == Protocol::kLine) {
    line_.add(conn);
  } else {
    relay_.add(conn);
  }
  clocks_.note_input(conn, now_);  // the idle clock starts at the accept
  read_.resume_reading(conn);
}

void Shard::LifecycleEventsOnShard::leave_services(Connection& conn, bool was_registered) {
  shard_.line_.forget(conn);  // a half-closed line connection: no forward or ok reaches it any more
  if (!was_registered) {
    return;
  }
  if (conn.protocol == Protocol::kLine) {
    shard_.line_.remove(conn);
    return;
  }
  shard_.relay_.remove(conn);
}

bool Shard::LifecycleEventsOnShard::half_close_line(Connection& conn) {
  return shard_.line_.half_close(conn);
}

void Shard::SendEventsOnShard::on_unwritable(Connection& conn) {
  shard_.lifecycle_.begin_close(conn);
}

void Shard::SendEventsOnShard::on_slow_consumer(Connection& conn) {
  shard_.lifecycle_.close_with_error(conn, protocol::ErrorCode::kSlowConsumer);
}

void Shard::SendEventsOnShard::on_send_done(Connection& conn) {
  shard_.lifecycle_.after_op(conn);
}

void Shard::SendEventsOnShard::on_notified(Connection& conn) {
  shard_.lifecycle_.maybe_finish_close(conn);
}

void Shard::ClockEventsOnShard::on_frame_timeout(Connection& conn) {
  shard_.lifecycle_.close_with_error(conn, protocol::ErrorCode::kFrameTimeout);
}

void Shard::ClockEventsOnShard::on_idle(Connection& conn, std::chrono::milliseconds silent_for) {
  spdlog::debug("shard {}: user {}: idle for {} ms, closing", shard_.index_, conn.id, silent_for.count());
  shard_.lifecycle_.begin_drain(conn, DrainDeadline::kGrace);  // what is queued for it is still written
}

void Shard::on_stop() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  line_.stop();
  acceptor_.stop();
  lifecycle_.stop();
  // Flush what is queued for the grace period, then close (each connection's drain deadline).
  for (Registry* registry : {&relay_.peers(), &line_.peers()}) {
    registry->for_each([&](RegistryEntry& entry) {
      lifecycle_.begin_drain(static_cast<Connection&>(entry), DrainDeadline::kGrace);
    });
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
    acceptor_.arm_all();  // an accept that failed for a transient error gets another go
  }
  clocks_.expire(now_);
  if (!gate_.open()) {
    cut_stalled_consumers();
  }
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

void Shard::cut_stalled_consumers() {
  std::vector<Connection*> stalled;
  for (Connection& conn : lifecycle_.connections()) {
    if (sender_.stalled(conn)) {
      stalled.push_back(&conn);
    }
  }
  if (stalled.empty()) {
    return;
  }
  spdlog::warn(
      "shard {}: hub memory past the high watermark: {} clients that took nothing for {} ms cut as "
      "slow consumers",
      index_, stalled.size(), config_.write_deadline.count());
  for (Connection* conn : stalled) {
    sender_.cut_stalled(*conn);
  }
}

}  // namespace ringhub
