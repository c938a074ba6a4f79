// BufferRing: mmap'd buffers behind a registered provided-buffer ring; see
// transport/uring/buffer_ring.hpp.
#include "transport/uring/buffer_ring.hpp"

#include <fmt/format.h>
#include <sys/mman.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "transport/uring/uring_compat.hpp"

namespace ringhub::uring {

Result<std::unique_ptr<BufferRing>> BufferRing::create(io_uring* ring, unsigned count, std::uint32_t size,
                                                       Residency residency) {
  count = std::bit_ceil(std::max(count, 2U));
  if (count > kMaxEntries) {
    return make_error(
        fmt::format("{} receive buffers exceed the kernel limit of {} per ring", count, kMaxEntries));
  }
  const std::size_t bytes = uring_compat::whole_pages(std::size_t{count} * size);
  // Populated: the pool is the hub's fixed footprint, resident from the start (its idle RSS says what
  // it costs), and the first burst does not fault its pages in on the receive path.
  const int populate = residency == Residency::kPopulated ? MAP_POPULATE : 0;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | populate, -1, 0);
  if (memory == MAP_FAILED) {
    return system_error(
        errno, fmt::format("cannot map {} bytes of receive buffers: {}", bytes, std::strerror(errno)));
  }
  int error = 0;
  io_uring_buf_ring* buf_ring = uring_compat::setup_buf_ring(ring, count, kGroupId, &error);
  if (buf_ring == nullptr) {
    munmap(memory, bytes);
    return system_error(-error, fmt::format("cannot register a provided buffer ring (needs Linux 5.19+): {}",
                                            std::strerror(-error)));
  }
  std::unique_ptr<BufferRing> pool(
      new BufferRing(ring, buf_ring, static_cast<std::uint8_t*>(memory), count, size));
  return pool;
}

BufferRing::BufferRing(io_uring* ring, io_uring_buf_ring* buf_ring, std::uint8_t* memory, unsigned count,
                       std::uint32_t size)
    : ring_(ring),
      buf_ring_(buf_ring),
      memory_(memory),
      count_(count),
      size_(size),
      blocks_(std::make_unique<SharedBlock[]>(count)) {
  for (unsigned bid = 0; bid < count; ++bid) {
    new (&blocks_[bid]) SharedBlock(memory_ + std::size_t{bid} * size_, size_, &BufferRing::on_release, this);
    ++held_;  // recycle() counts it back in
    recycle(static_cast<std::uint16_t>(bid));
  }
  publish_recycled();
}

BufferRing::~BufferRing() {
  uring_compat::free_buf_ring(ring_, buf_ring_, count_, kGroupId);
  munmap(memory_, uring_compat::whole_pages(std::size_t{count_} * size_));
}

BlockRef BufferRing::take(std::uint16_t bid) {
  ++held_;
  return BlockRef(&blocks_[bid]);
}

void BufferRing::on_release(SharedBlock* block) {
  auto* pool = static_cast<BufferRing*>(block->owner());
  pool->recycle(static_cast<std::uint16_t>(block - pool->blocks_.get()));
}

void BufferRing::recycle(std::uint16_t bid) {
  io_uring_buf_ring_add(buf_ring_, blocks_[bid].data(), size_, bid, io_uring_buf_ring_mask(count_),
                        static_cast<int>(pending_));
  ++pending_;
  --held_;
}

unsigned BufferRing::publish_recycled() {
  const unsigned published = pending_;
  if (published > 0) {
    io_uring_buf_ring_advance(buf_ring_, static_cast<int>(published));
    pending_ = 0;
  }
  return published;
}

}  // namespace ringhub::uring
