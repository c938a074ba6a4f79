// OutboundQueue: one connection's ordered bytes waiting to be written, as slices of shared blocks.
// The send path turns its head into an iovec array (no copy) and consumes what the kernel took.
#pragma once

#include <sys/uio.h>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/shared_block.hpp"

namespace ringhub {

// A run of bytes inside a shared block. A slice without a block is a placeholder: a reply that is
// still being gathered (a cross-shard LIST). Sending stops at it so replies keep request order.
struct Slice {
  BlockRef block;
  std::uint32_t offset = 0;  // for a placeholder: its token
  std::uint32_t length = 0;

  bool is_placeholder() const { return !block; }
};

// What fill_batched put into an iovec array.
struct SendPlan {
  std::size_t iov_count = 0;
  std::size_t bytes = 0;           // all the iovecs point at
  std::size_t batched_bytes = 0;   // of which copied into the batch buffer
  std::uint64_t end_position = 0;  // the queue position after the last slice the iovecs cover
};

// Where fill_batched copies small slices: blocks handed out one at a time as each fills.
class BatchBlocks {
 public:
  // The owner tag (SharedBlock::owner) every batch block carries. A slice in one was copied by an
  // earlier send (the unsent rest of a short send): it goes out from there as it is, not copied again.
  static void* owner_tag() {
    static char tag;
    return &tag;
  }

  // A block that no slice refers to yet, made with owner_tag(), for the slice at queue `position` and
  // those after it; or an empty reference when this send may use no more.
  virtual BlockRef next(std::uint64_t position) = 0;

 protected:
  ~BatchBlocks() = default;
};

// Contract: owned by one connection on one shard. Memory is allocated only while slices are queued,
// so an idle connection pays for a few words. The slice ring is charged to `account` (if any).
class OutboundQueue {
 public:
  // What one queued slice is charged beyond its bytes when the queue's memory is measured: the block
  // header and malloc's rounding of a reply the slice may hold alone (see HeapBlock::footprint).
  static constexpr std::size_t kSliceOverheadBytes = HeapBlock::kHeaderBytes + 16;
  // The allocation of one block push_copy appends into: the power of two above what is queued, within
  // these bounds (a copy larger than the largest gets a block of its own size). The largest stays below
  // LargeBlockMemory's size, so malloc reuses a freed one at once.
  static constexpr std::size_t kMinAppendAllocation = 1U << 10;
  static constexpr std::size_t kMaxAppendAllocation = 64U << 10;
  // The owner tag (SharedBlock::owner) of the blocks push_copy appends into.
  static void* append_owner_tag() {
    static char tag;
    return &tag;
  }

  OutboundQueue() = default;
  explicit OutboundQueue(MemoryAccount* account) : account_(account) {}
  OutboundQueue(const OutboundQueue&) = delete;
  OutboundQueue& operator=(const OutboundQueue&) = delete;
  ~OutboundQueue() { clear(); }

  bool empty() const { return count_ == 0; }
  std::size_t slice_count() const { return count_; }
  std::size_t queued_bytes() const { return queued_bytes_; }  // bytes not yet consumed
  // The memory this queue makes the hub hold, as the slow-consumer limit counts it: queued bytes, a
  // block overhead per slice, the slice ring itself, and the unused room of every block push_copy made.
  std::size_t memory_bytes() const {
    return queued_bytes_ + count_ * kSliceOverheadBytes + std::size_t{capacity_} * sizeof(Slice) +
           append_room() + left_behind_room_;
  }

  void push(BlockRef block, std::uint32_t offset, std::uint32_t length);
  // Queues a copy of `bytes` (bytes the hub composed, or a small frame for one receiver). It goes into
  // the room left in the block the last copy went into when it is still the tail, so a run of small
  // copies costs one allocation per block, not one each, and leaves as one iovec with no second copy.
  // The block is charged to the queue's account, and its unused room is measured by memory_bytes();
  // returns false when memory is exhausted.
  bool push_copy(std::span<const std::uint8_t> bytes);
  // Holds a place for a reply still being gathered; returns its position for fill_placeholder.
  std::uint64_t push_placeholder(std::uint32_t token);
  // Fills the placeholder pushed at `position` with `token`, in O(1); returns false if it is gone
  // (the queue was cut after it).
  bool fill_placeholder(std::uint64_t position, std::uint32_t token, BlockRef block, std::uint32_t offset,
                        std::uint32_t length);

  // Points up to `max_iov` iovecs (at most `max_bytes` in all, and at least one byte: a longer head slice
  // goes out in part) at the head.
  // Returns how many it filled; stops at a placeholder.
  std::size_t fill_iovecs(iovec* iov, std::size_t max_iov, std::size_t max_bytes);

  // Like fill_iovecs, but slices of at most `small_limit` bytes are copied back to back into batch
  // blocks taken from `batches` as each fills, one iovec per run of them: below that size a memcpy costs
  // less than the kernel's per-iovec work, and one send then carries hundreds of small frames instead of
  // max_iov. Larger slices stay zero-copy. Each copied slice then refers to its bytes in the batch, and
  // its own block's reference goes at once: a receive buffer lent to the queue is free as soon as its
  // frame is copied, and the unsent rest of a short send is sent again from the batch. Stops when
  // `batches` has no more; `small_limit` 0 turns batching off.
  SendPlan fill_batched(iovec* iov, std::size_t max_iov, std::size_t max_bytes, BatchBlocks& batches,
                        std::size_t small_limit);

  // The position the next push takes (positions count every slice ever pushed).
  std::uint64_t end_position() const { return popped_ + count_; }

  // Gives every slice whose block belongs to `owner` (SharedBlock::owner) a heap block of its own with a
  // copy of its bytes, charged to `account`, so the borrowed block can go back. Returns the bytes
  // copied, or -1 when memory ran out (slices not yet copied keep their borrowed block).
  std::int64_t copy_out_blocks_of(const void* owner, MemoryAccount* account);

  // Drops `bytes` from the head (what a send took). Blocks whose slices are fully consumed are
  // released, or moved into `keep` when the caller must hold them longer (send_zc notifications).
  void consume(std::size_t bytes, std::vector<BlockRef>* keep = nullptr);

  // Drops everything except the first `keep_bytes` bytes of the head (bytes a send in flight still
  // points at): the slices they touch stay whole, except a block of push_copy's, which is cut where
  // they end (at the end of a copy: later copies were appended after the send began). Used when the
  // connection is going away or turns into an error reply.
  void truncate_after(std::size_t keep_bytes);
  void clear() { truncate_after(0); }
  // A queue emptied by sending keeps its slice ring, still charged, so one that fills and drains every
  // loop iteration does not allocate it each time (K=16 64 B: 6% of the hub's CPU). Its owner calls this
  // now and then (the shard's tick) so an idle connection holds none; clear() frees it at once.
  void release_spare_ring();
  // Whether the queue is empty but still holds its slice ring (release_spare_ring() would free it).
  bool holds_spare_ring() const { return count_ == 0 && ring_ != nullptr; }

 private:
  Slice& at(std::size_t i) const { return ring_[(head_ + i) & (capacity_ - 1)]; }
  // Whether `slice` lies in a block push_copy made (the only slice that refers to that block).
  static bool is_appended(const Slice& slice);
  // Bytes left after the tail slice in its block when push_copy may append there: the tail is a
  // block push_copy made, and only that slice refers to it, so nothing reads past the slice's end.
  // Also what the queue holds beyond its bytes (the block is charged for them). Kept in tail_room_ so
  // a push and the slow-consumer check need not look into the tail's block.
  std::size_t append_room() const {
    assert(tail_room_ == (count_ == 0 ? 0 : room_after(at(count_ - 1))));
    return tail_room_;
  }
  // The unused room after `slice` in its block, if push_copy made that block (else 0).
  static std::size_t room_after(const Slice& slice);
  // Bytes of the block push_copy makes for a copy of `length` bytes that does not fit the tail's room.
  std::uint32_t next_append_block_size(std::uint32_t length) const;
  void grow();
  void pop_front();
  void free_ring();

  MemoryAccount* account_ = nullptr;
  std::unique_ptr<Slice[]> ring_;
  std::uint32_t capacity_ = 0;  // power of two, or 0 before the first push
  std::uint32_t head_ = 0;
  std::uint32_t count_ = 0;
  std::uint32_t head_sent_ = 0;  // bytes of the head slice already written
  std::size_t queued_bytes_ = 0;
  std::uint64_t popped_ = 0;  // slices ever taken off the head: position - popped_ is an index
  // The unused room of the push_copy blocks before the tail: fixed once another slice follows them.
  std::size_t left_behind_room_ = 0;
  std::size_t tail_room_ = 0;  // append_room(): room_after(the tail slice), 0 when empty
};

}  // namespace ringhub
