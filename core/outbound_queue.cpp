// OutboundQueue: a power-of-two ring of slices; see core/outbound_queue.hpp.
#include "core/outbound_queue.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>

namespace ringhub {

namespace {
constexpr std::uint32_t kFirstCapacity = 8;
}

void OutboundQueue::grow() {
  const std::uint32_t capacity = capacity_ == 0 ? kFirstCapacity : capacity_ * 2;
  auto ring = std::make_unique<Slice[]>(capacity);
  for (std::uint32_t i = 0; i < count_; ++i) {
    ring[i] = std::move(at(i));
  }
  if (account_ != nullptr) {
    account_->charge(malloc_footprint(sizeof(Slice) * capacity));
    if (capacity_ != 0) {
      account_->release(malloc_footprint(sizeof(Slice) * capacity_));
    }
  }
  ring_ = std::move(ring);
  capacity_ = capacity;
  head_ = 0;
}

void OutboundQueue::free_ring() {
  assert(left_behind_room_ == 0 && "an empty queue has no block left behind");
  if (account_ != nullptr && capacity_ != 0) {
    account_->release(malloc_footprint(sizeof(Slice) * capacity_));
  }
  ring_.reset();  // an idle connection holds no slice memory
  capacity_ = 0;
  head_ = 0;
}

void OutboundQueue::push(BlockRef block, std::uint32_t offset, std::uint32_t length) {
  left_behind_room_ += append_room();  // the tail's room stays unused once another slice follows it
  if (count_ == capacity_) {
    grow();
  }
  Slice& s = at(count_);
  s.block.take_into_empty(std::move(block));  // slots past the tail are empty
  s.offset = offset;
  s.length = length;
  ++count_;
  queued_bytes_ += length;
  tail_room_ = 0;  // push_copy sets it for a block of its own; any other block has no room to append
}

bool OutboundQueue::is_appended(const Slice& slice) {
  return !slice.is_placeholder() && slice.block->owner() == append_owner_tag();
}

std::size_t OutboundQueue::room_after(const Slice& slice) {
  return is_appended(slice) ? slice.block->capacity() - slice.offset - slice.length : 0;
}

bool OutboundQueue::push_copy(std::span<const std::uint8_t> bytes) {
  const auto length = static_cast<std::uint32_t>(bytes.size());
  if (length == 0) {
    return true;
  }
  const std::size_t room = append_room();
  if (room >= length) {
    Slice& tail = at(count_ - 1);
    std::memcpy(tail.block.data() + tail.offset + tail.length, bytes.data(), length);
    tail.length += length;
    queued_bytes_ += length;
    tail_room_ -= length;
    return true;
  }
  BlockRef block =
      HeapBlock::create(next_append_block_size(length), account_, UINT32_MAX, append_owner_tag());
  if (!block) {
    return false;
  }
  std::memcpy(block.data(), bytes.data(), length);
  const std::size_t room_left = block->capacity() - length;
  push(std::move(block), 0, length);
  tail_room_ = room_left;
  return true;
}

std::uint32_t OutboundQueue::next_append_block_size(std::uint32_t length) const {
  // Sized to the queue: a receiver that is behind gets blocks as large as its backlog, so a stream of
  // small copies costs few allocations. Sized to the copy alone (or doubled only through unbroken runs
  // of copies, which frames lent in between keep breaking) it cost a malloc per frame or two, and K=1
  // 1 KiB at a fixed rate stalled again (docs/perf/README.md, "A stall at a fixed rate").
  // But room that the slices between copies keep leaving behind is wasted: one reply placeholder after
  // every copy (pipelined IDENTITY and LIST on a hub of several shards) left a queue-sized block per
  // reply, and 2,400 such pairs from a client that read everything cut it as a slow consumer. So once
  // the room left behind outweighs what is queued, a copy gets a block of its own size (to the malloc
  // granule, so the slice's measure still covers what the block is charged): the room wasted stays
  // below the queued bytes plus one block.
  if (left_behind_room_ > queued_bytes_) {
    return static_cast<std::uint32_t>(malloc_granules(length + kSliceOverheadBytes) - kSliceOverheadBytes);
  }
  const std::size_t wanted = std::min(queued_bytes_ + length + kSliceOverheadBytes, kMaxAppendAllocation);
  const std::size_t allocation = std::max(std::bit_ceil(wanted), kMinAppendAllocation);
  return static_cast<std::uint32_t>(std::max<std::size_t>(allocation - kSliceOverheadBytes, length));
}

std::uint64_t OutboundQueue::push_placeholder(std::uint32_t token) {
  push(BlockRef(), token, 0);
  return popped_ + count_ - 1;
}

bool OutboundQueue::fill_placeholder(std::uint64_t position, std::uint32_t token, BlockRef block,
                                     std::uint32_t offset, std::uint32_t length) {
  // A position below popped_ was sent (impossible: sending stops at a placeholder) or one at or past
  // the count was cut; the token tells a reused position from the one we pushed.
  if (position < popped_ || position - popped_ >= count_) {
    return false;
  }
  Slice& s = at(static_cast<std::size_t>(position - popped_));
  if (!s.is_placeholder() || s.offset != token) {
    return false;
  }
  s.block = std::move(block);
  s.offset = offset;
  s.length = length;
  queued_bytes_ += length;
  if (position - popped_ == count_ - 1) {
    tail_room_ = room_after(s);
  }
  return true;
}

namespace {
// No batch at all: every slice zero-copy.
struct NoBatches final : BatchBlocks {
  BlockRef next(std::uint64_t /*position*/) override { return {}; }
};
}  // namespace

std::size_t OutboundQueue::fill_iovecs(iovec* iov, std::size_t max_iov, std::size_t max_bytes) {
  NoBatches none;
  return fill_batched(iov, max_iov, max_bytes, none, 0).iov_count;
}

SendPlan OutboundQueue::fill_batched(iovec* iov, std::size_t max_iov, std::size_t max_bytes,
                                     BatchBlocks& batches, std::size_t small_limit) {
  SendPlan plan;
  BlockRef batch;                               // the block small slices are copied into now
  std::size_t used = 0;                         // of it
  bool in_run = false;                          // the last iovec is a run in `batch` a copy can extend
  const std::uint8_t* zero_copy_end = nullptr;  // where the last iovec ends, if it is not in `batch`
  std::uint32_t i = 0;
  for (; i < count_; ++i) {
    Slice& s = at(i);
    if (s.is_placeholder()) {
      break;
    }
    const std::uint32_t skip = i == 0 ? head_sent_ : 0;
    const std::size_t len = s.length - skip;
    std::uint8_t* from = s.block.data() + s.offset + skip;
    // Copied already, by an earlier send or by push_copy: it goes out from where it is.
    const bool batched_before = s.block->owner() == BatchBlocks::owner_tag() || is_appended(s);
    const bool small = small_limit > 0 && len <= small_limit && !batched_before;
    const bool extends_run = small && in_run && used + len <= batch->capacity();
    const bool extends_zero_copy = batched_before && from == zero_copy_end;  // the batch's next bytes
    if ((plan.iov_count > 0 && plan.bytes + len > max_bytes) ||
        (!extends_run && !extends_zero_copy && plan.iov_count == max_iov)) {
      break;
    }
    if (!small) {
      // Only a first slice can be longer than the send: it goes out in part (at least a byte),
      // resumed by the next.
      const std::size_t take = std::min(len, std::max<std::size_t>(max_bytes, 1));
      if (extends_zero_copy) {
        iov[plan.iov_count - 1].iov_len += take;
      } else {
        iov[plan.iov_count++] = iovec{from, take};
      }
      zero_copy_end = from + take;
      in_run = false;
      plan.bytes += take;
      if (take < len) {
        break;  // the slice is not covered whole: end_position stays before it
      }
      continue;
    }
    zero_copy_end = nullptr;
    if (!batch || used + len > batch->capacity()) {
      batch = batches.next(popped_ + i);
      used = 0;
      if (!batch || len > batch->capacity()) {
        break;
      }
    }
    std::uint8_t* to = batch.data() + used;
    std::memcpy(to, from, len);
    if (!extends_run) {
      iov[plan.iov_count++] = iovec{to, 0};
      in_run = true;
    }
    iov[plan.iov_count - 1].iov_len += len;
    s = Slice{batch, static_cast<std::uint32_t>(used), static_cast<std::uint32_t>(len)};
    if (i == 0) {
      head_sent_ = 0;  // the slice now holds only the bytes not yet written
    }
    used += len;
    plan.batched_bytes += len;
    plan.bytes += len;
  }
  plan.end_position = popped_ + i;
  return plan;
}

std::int64_t OutboundQueue::copy_out_blocks_of(const void* owner, MemoryAccount* account) {
  std::int64_t copied = 0;
  for (std::uint32_t i = 0; i < count_; ++i) {
    Slice& s = at(i);
    if (s.is_placeholder() || s.block->owner() != owner) {
      continue;
    }
    BlockRef own = HeapBlock::create(s.length, account);
    if (!own) {
      return -1;
    }
    std::memcpy(own.data(), s.block.data() + s.offset, s.length);
    s.block = std::move(own);
    s.offset = 0;
    copied += s.length;
  }
  return copied;
}

void OutboundQueue::pop_front() {
  if (count_ > 1) {
    left_behind_room_ -= room_after(at(0));
  }
  at(0) = Slice{};
  head_ = (head_ + 1) & (capacity_ - 1);
  --count_;
  ++popped_;
  head_sent_ = 0;
  if (count_ == 0) {
    tail_room_ = 0;
    // The next burst starts at the ring's front, whose lines the last burst left in cache, rather than
    // where this one ended, which a ring sized for the longest backlog may have evicted.
    head_ = 0;
  }
  // Emptied by sending: the ring stays (charged) for the next burst; release_spare_ring() frees it.
}

void OutboundQueue::release_spare_ring() {
  if (holds_spare_ring()) {
    free_ring();
  }
}

void OutboundQueue::consume(std::size_t bytes, std::vector<BlockRef>* keep) {
  assert(bytes <= queued_bytes_);
  queued_bytes_ -= bytes;
  while (bytes > 0) {
    Slice& s = at(0);
    const std::size_t left = s.length - head_sent_;
    if (bytes < left) {
      head_sent_ += static_cast<std::uint32_t>(bytes);
      if (keep != nullptr) {
        keep->push_back(s.block);
      }
      return;
    }
    bytes -= left;
    if (keep != nullptr) {
      keep->push_back(std::move(s.block));
    }
    pop_front();
  }
}

void OutboundQueue::truncate_after(std::size_t keep_bytes) {
  std::size_t seen = 0;
  std::uint32_t kept = 0;
  while (kept < count_ && seen < keep_bytes) {
    seen += at(kept).length - (kept == 0 ? head_sent_ : 0);
    ++kept;
  }
  while (count_ > kept) {
    Slice& s = at(count_ - 1);
    queued_bytes_ -= s.length;
    s = Slice{};
    --count_;
  }
  if (seen > keep_bytes && is_appended(at(count_ - 1))) {
    const auto appended_since = static_cast<std::uint32_t>(seen - keep_bytes);
    at(count_ - 1).length -= appended_since;
    queued_bytes_ -= appended_since;
  }
  left_behind_room_ = 0;  // rare (a connection going away): counted again from what is left
  for (std::uint32_t i = 0; i + 1 < count_; ++i) {
    left_behind_room_ += room_after(at(i));
  }
  tail_room_ = count_ == 0 ? 0 : room_after(at(count_ - 1));
  if (count_ == 0) {
    queued_bytes_ = 0;
    head_sent_ = 0;
    free_ring();
  }
}

}  // namespace ringhub
