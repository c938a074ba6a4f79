// Shard: keeping receive buffers free. A zero-copy delivery pins the receive buffer it points into
// until it is sent, so a reader that stops reading could pin the whole pool and stall every sender on
// the shard. When buffers run low, queued slices that pin a buffer are copied to the heap (counted),
// and sends stuck for a whole tick are cancelled so their slices can be copied too.
#include <spdlog/spdlog.h>

#include <cstring>

#include "transport/op_tag.hpp"
#include "transport/shard.hpp"

namespace ringhub {

namespace {
// Under pressure when more than this share of the pool is out of the ring.
constexpr unsigned kPressureNumerator = 3;
constexpr unsigned kPressureDenominator = 4;
}  // namespace

bool Shard::pool_under_pressure() const {
  return pool_->held() * kPressureDenominator > pool_->count() * kPressureNumerator;
}

bool Shard::any_pool_under_pressure() const {
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    if (shared_.pool_pressure[s].load(std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void Shard::relieve_pool_pressure(bool cancel_stuck_sends) {
  if (relieved_this_iteration_ && !cancel_stuck_sends) {
    return;
  }
  relieved_this_iteration_ = true;
  const std::uint64_t before = unpinned_bytes_;
  for (Connection& conn : all_) {
    if (conn.state == ConnState::kClosing) {
      continue;
    }
    unpin(conn);
    const bool stuck = conn.send_in_flight && conn.sends_completed == conn.tick_mark && !conn.unpin_cancel;
    if (cancel_stuck_sends && stuck) {
      // No progress for a whole tick: the reader is not reading. Take the send back (nothing of it was
      // written: a stream send that writes anything completes) and resend from copies.
      io_uring_sqe* entry = sqe();
      io_uring_prep_cancel64(entry, tag(&conn, Op::kSend), 0);
      io_uring_sqe_set_data64(entry, tag(nullptr, Op::kIgnore));
      conn.unpin_cancel = true;
    }
    conn.tick_mark = conn.sends_completed;
  }
  if (unpinned_bytes_ != before) {
    spdlog::debug("shard {}: receive buffers low ({} of {} out); copied {} queued bytes out of them", index_,
                  pool_->held(), pool_->count(), unpinned_bytes_ - before);
  }
}

void Shard::announce_pool_pressure() {
  if (shared_.shard_count == 1 || announced_this_iteration_) {
    return;
  }
  announced_this_iteration_ = true;
  shared_.pool_pressure[index_].store(true, std::memory_order_relaxed);  // the tick clears it
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    if (s != index_) {
      post(s, new ShardMessage(ShardMessage::Kind::kPoolPressure, index_));
    }
  }
}

void Shard::unpin(Connection& conn) {
  conn.outbound.for_each_after(conn.inflight_bytes, [&](Slice& slice) {
    if (HeapBlock::owns(*slice.block.get())) {
      return;
    }
    BlockRef copy = copy_block(slice.block.data() + slice.offset, slice.length);
    if (!copy) {
      return;  // out of memory: leave it pinned; the slow-consumer limit still bounds it
    }
    slice.block = std::move(copy);
    slice.offset = 0;
    unpinned_bytes_ += slice.length;
  });
}

}  // namespace ringhub
