// RecvBufferPool: mmap'd buffers behind a registered provided-buffer ring.
#include "transport/recv_buffer_pool.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "transport/uring_compat.hpp"

namespace ringhub {

namespace {
constexpr unsigned kMaxRingEntries = 32768;  // kernel limit for a provided buffer ring
}

Result<std::unique_ptr<RecvBufferPool>> RecvBufferPool::create(io_uring* ring, unsigned count,
                                                               std::uint32_t size) {
  count = std::bit_ceil(std::max(count, 2U));
  if (count > kMaxRingEntries) {
    return make_error(
        fmt::format("--recv-buffers {} exceeds the kernel limit of {} per shard", count, kMaxRingEntries));
  }
  const std::size_t bytes = std::size_t{count} * size;
  // Populated now: the pool is the hub's fixed footprint, resident from the start (its idle RSS says
  // what it costs), and the first burst does not fault its pages in on the receive path.
  void* memory =
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | MAP_POPULATE, -1, 0);
  if (memory == MAP_FAILED) {
    return make_error(fmt::format("cannot map {} bytes of receive buffers: {}", bytes, std::strerror(errno)),
                      errno);
  }
  int error = 0;
  io_uring_buf_ring* buf_ring = uring_compat::setup_buf_ring(ring, count, kGroupId, &error);
  if (buf_ring == nullptr) {
    munmap(memory, bytes);
    return make_error(
        fmt::format("cannot register a provided buffer ring (needs Linux 5.19+): {}", std::strerror(-error)),
        -error);
  }
  std::unique_ptr<RecvBufferPool> pool(
      new RecvBufferPool(ring, buf_ring, static_cast<std::uint8_t*>(memory), count, size));
  return pool;
}

RecvBufferPool::RecvBufferPool(io_uring* ring, io_uring_buf_ring* buf_ring, std::uint8_t* memory,
                               unsigned count, std::uint32_t size)
    : ring_(ring),
      buf_ring_(buf_ring),
      memory_(memory),
      count_(count),
      size_(size),
      blocks_(std::make_unique<SharedBlock[]>(count)) {
  for (unsigned bid = 0; bid < count; ++bid) {
    new (&blocks_[bid])
        SharedBlock(memory_ + std::size_t{bid} * size_, size_, &RecvBufferPool::on_release, this);
    ++held_;  // recycle() counts it back in
    recycle(static_cast<std::uint16_t>(bid));
  }
  publish_recycled();
}

RecvBufferPool::~RecvBufferPool() {
  uring_compat::free_buf_ring(ring_, buf_ring_, count_, kGroupId);
  munmap(memory_, std::size_t{count_} * size_);
}

BlockRef RecvBufferPool::take(std::uint16_t bid) {
  ++held_;
  return BlockRef(&blocks_[bid]);
}

void RecvBufferPool::on_release(SharedBlock* block) {
  auto* pool = static_cast<RecvBufferPool*>(block->owner());
  pool->recycle(static_cast<std::uint16_t>(block - pool->blocks_.get()));
}

void RecvBufferPool::recycle(std::uint16_t bid) {
  io_uring_buf_ring_add(buf_ring_, blocks_[bid].data(), size_, bid, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
  --held_;
}

unsigned RecvBufferPool::publish_recycled() {
  const unsigned published = pending_;
  if (published > 0) {
    io_uring_buf_ring_advance(buf_ring_, static_cast<int>(published));
    pending_ = 0;
  }
  return published;
}

}  // namespace ringhub
