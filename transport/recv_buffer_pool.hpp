// RecvBufferPool: one shard's provided buffer ring. The kernel picks a free buffer for each
// multishot recv completion; the buffer then travels as a SharedBlock through the relay and comes
// back to the ring when the last send that points at it completes.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "core/result.hpp"
#include "core/shared_block.hpp"

namespace ringhub {

// Contract: owned and used by one shard's thread (the ring's single issuer).
class RecvBufferPool {
 public:
  static constexpr unsigned kGroupId = 0;

  // `count` is rounded up to a power of two (a buf ring requirement), at most 32768.
  static Result<std::unique_ptr<RecvBufferPool>> create(io_uring* ring, unsigned count, std::uint32_t size);
  RecvBufferPool(const RecvBufferPool&) = delete;
  RecvBufferPool& operator=(const RecvBufferPool&) = delete;
  ~RecvBufferPool();

  // The kernel filled buffer `bid`: it is ours until the returned reference (and its copies) go.
  BlockRef take(std::uint16_t bid);

  // Hands recycled buffers back to the kernel with one tail update; returns how many.
  unsigned publish_recycled();

  std::uint32_t buffer_size() const { return size_; }
  unsigned count() const { return count_; }
  unsigned held() const { return held_; }  // buffers out of the ring (being parsed or sent)
  std::uint64_t bytes_held() const { return std::uint64_t{held_} * size_; }

 private:
  RecvBufferPool(io_uring* ring, io_uring_buf_ring* buf_ring, std::uint8_t* memory, unsigned count,
                 std::uint32_t size);
  static void on_release(SharedBlock* block);
  void recycle(std::uint16_t bid);

  io_uring* ring_;
  io_uring_buf_ring* buf_ring_;
  std::uint8_t* memory_;
  unsigned count_;
  std::uint32_t size_;
  unsigned held_ = 0;
  unsigned pending_ = 0;  // recycled, not yet published
  std::unique_ptr<SharedBlock[]> blocks_;
};

}  // namespace ringhub
