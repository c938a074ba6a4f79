// BufferRing: a registered provided-buffer ring and the mmap'd buffers behind it, the receive memory
// of every ring in ringhub. The kernel picks a free buffer for each multishot recv completion; take()
// wraps it in a SharedBlock that comes back to the ring when its last reference goes: the hub passes
// it through the relay to the sends, a client loop drops it as soon as its handler has read the bytes.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "core/result.hpp"
#include "core/shared_block.hpp"

namespace ringhub::uring {

// Contract: owned and used by one thread (the ring's single issuer); destroyed before its ring.
class BufferRing {
 public:
  // The buffer group every ringhub ring registers (one group per ring).
  static constexpr unsigned kGroupId = 0;
  // The kernel's limit of entries in one provided buffer ring (buffer ids are 16 bits).
  static constexpr unsigned kMaxEntries = 32768;

  // When the buffers' pages become resident: all at creation (the hub and the harnesses, whose pool is
  // their fixed footprint and whose first burst should not fault), or as bytes first reach them (a
  // client library, whose buffers mostly hold small replies).
  enum class Residency : std::uint8_t { kPopulated, kOnDemand };

  // `count` is rounded up to a power of two (a buf ring requirement), at most kMaxEntries. Every
  // buffer starts in the ring.
  static Result<std::unique_ptr<BufferRing>> create(io_uring* ring, unsigned count, std::uint32_t size,
                                                    Residency residency = Residency::kPopulated);
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing();

  // The kernel filled buffer `bid`: it is ours until the returned reference (and its copies) go,
  // then it is queued for publish_recycled().
  BlockRef take(std::uint16_t bid);

  // Hands recycled buffers back to the kernel with one tail update; returns how many.
  unsigned publish_recycled();

  std::uint32_t buffer_size() const { return size_; }
  unsigned count() const { return count_; }
  unsigned held() const { return held_; }         // buffers out of the ring (being parsed or sent)
  unsigned recycled() const { return pending_; }  // back from their users, not yet published
  std::uint64_t bytes_held() const { return std::uint64_t{held_} * size_; }

 private:
  BufferRing(io_uring* ring, io_uring_buf_ring* buf_ring, std::uint8_t* memory, unsigned count,
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

}  // namespace ringhub::uring
