// HeapBlock: one malloc holding the SharedBlock header followed by its bytes, charged to a
// MemoryAccount for as long as it lives. Small blocks are recycled through a bounded per-thread cache.
#include "core/shared_block.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define RINGHUB_NO_BLOCK_CACHE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RINGHUB_NO_BLOCK_CACHE 1
#endif
#endif

namespace ringhub {

namespace {
struct HeapBlockHeader {
  SharedBlock block;
  MemoryAccount* account;
  std::uint32_t charged;  // bytes charged to `account` now
  std::uint32_t granted;  // bytes the large-block source gave (0: the block came from malloc)
};
static_assert((sizeof(HeapBlockHeader) + 15) / 16 * 16 == HeapBlock::kHeaderBytes);

HeapBlockHeader& header_of(SharedBlock& block) {
  return *reinterpret_cast<HeapBlockHeader*>(&block);
}

const LargeBlockSource* large_source = nullptr;

// Small blocks (header and bytes together up to kSmallBlockMaxBytes) are allocated in 16-byte size
// classes (malloc's own granularity), and a freed one waits in its thread's cache for the next block of its
// class. A shard copies every small frame out of its receive buffer into a block of its own, hundreds per
// buffer, and frees them in bursts once sent: through glibc (whose tcache keeps 7 chunks per size) that was
// 30% of the hub's CPU at K=1 64 B (_int_free and malloc), and halved its throughput. The cache holds at most
// kSmallCacheBytes per thread, so what it keeps uncharged is bounded; sanitizer builds go straight to
// malloc so ASan still sees every use after free.
constexpr std::size_t kSmallClassBytes = 16;
constexpr std::size_t kSmallBlockMaxBytes = 2048;
constexpr std::size_t kSmallClasses = kSmallBlockMaxBytes / kSmallClassBytes;
constexpr std::size_t kSmallCacheBytes = HeapBlock::kSmallBlockCacheBytes;

// What malloc is asked for to hold `with_header` bytes: its size class when small.
std::size_t allocation_bytes(std::size_t with_header) {
  if (with_header > kSmallBlockMaxBytes) {
    return with_header;
  }
  return (with_header + kSmallClassBytes - 1) / kSmallClassBytes * kSmallClassBytes;
}

// Every live thread's cache size, for the gauge: each thread writes only its own figure (a plain
// store on its own line, no contention on the hot path); a reader sums them under the mutex, which
// threads take only when they start and end.
class CacheSizes {
 public:
  struct alignas(64) Figure {
    std::atomic<std::size_t> bytes{0};
  };
  void add(const Figure* figure) {
    const std::lock_guard lock(mutex_);
    figures_.push_back(figure);
  }
  void remove(const Figure* figure) {
    const std::lock_guard lock(mutex_);
    figures_.erase(std::remove(figures_.begin(), figures_.end(), figure), figures_.end());
  }
  std::uint64_t sum() const {
    const std::lock_guard lock(mutex_);
    std::uint64_t total = 0;
    for (const Figure* figure : figures_) {
      total += figure->bytes.load(std::memory_order_relaxed);
    }
    return total;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<const Figure*> figures_;
};

CacheSizes& cache_sizes() {
  // Never destroyed: a thread may still make or end its cache during static destruction.
  static auto* const sizes = new CacheSizes;
  return *sizes;
}

class SmallBlockCache {
 public:
  SmallBlockCache() { cache_sizes().add(&published_); }
  SmallBlockCache(const SmallBlockCache&) = delete;
  SmallBlockCache& operator=(const SmallBlockCache&) = delete;
  ~SmallBlockCache() {
    cache_sizes().remove(&published_);
    for (FreeChunk* head : heads_) {
      while (head != nullptr) {
        FreeChunk* next = head->next;
        std::free(head);
        head = next;
      }
    }
  }

  // A chunk of exactly `bytes` (a small size class), from the cache or malloc.
  void* allocate(std::size_t bytes) {
    FreeChunk*& head = heads_[class_of(bytes)];
    if (head == nullptr) {
      return std::malloc(bytes);
    }
    FreeChunk* chunk = head;
    head = chunk->next;
    cached_ -= bytes;
    published_.bytes.store(cached_, std::memory_order_relaxed);
    return chunk;
  }

  // Keeps `memory` (a chunk of `bytes`, a small size class) for reuse, or frees it if the cache is full.
  void deallocate(void* memory, std::size_t bytes) {
    if (cached_ + bytes > kSmallCacheBytes) {
      std::free(memory);
      return;
    }
    FreeChunk*& head = heads_[class_of(bytes)];
    head = new (memory) FreeChunk{head};
    cached_ += bytes;
    published_.bytes.store(cached_, std::memory_order_relaxed);
  }

 private:
  struct FreeChunk {
    FreeChunk* next;
  };
  static std::size_t class_of(std::size_t bytes) { return bytes / kSmallClassBytes - 1; }

  std::array<FreeChunk*, kSmallClasses> heads_{};
  std::size_t cached_ = 0;
  CacheSizes::Figure published_;  // cached_, for other threads
};

#ifndef RINGHUB_NO_BLOCK_CACHE
thread_local SmallBlockCache small_blocks;

void* allocate_from_heap(std::size_t bytes) {
  return bytes <= kSmallBlockMaxBytes ? small_blocks.allocate(bytes) : std::malloc(bytes);
}
void free_to_heap(void* memory, std::size_t bytes) {
  if (bytes <= kSmallBlockMaxBytes) {
    small_blocks.deallocate(memory, bytes);
  } else {
    std::free(memory);
  }
}
#else
void* allocate_from_heap(std::size_t bytes) {
  return std::malloc(bytes);
}
void free_to_heap(void* memory, std::size_t /*bytes*/) {
  std::free(memory);
}
#endif

bool uses_large_source(std::size_t bytes) {
  return large_source != nullptr && bytes >= large_source->min_bytes;
}

// What the first `bytes` bytes of a block cost: what malloc hands out, or the pages touched so far in
// a block from the large-block source, and all it holds once full.
std::size_t cost_of(const HeapBlockHeader& header, std::uint32_t bytes) {
  const std::size_t with_header = HeapBlock::kHeaderBytes + bytes;
  if (header.granted == 0) {
    return malloc_footprint(allocation_bytes(with_header));
  }
  if (bytes >= header.block.capacity()) {
    return header.granted;
  }
  // Pages no byte has reached yet are not resident: a block filled as its bytes arrive is charged by
  // the page.
  return std::min<std::size_t>((with_header + kPageBytes - 1) & ~(kPageBytes - 1), header.granted);
}
}  // namespace

std::uint64_t HeapBlock::small_block_cache_bytes() {
  return cache_sizes().sum();
}

void HeapBlock::set_large_block_source(const LargeBlockSource* source) {
  large_source = source;
}

std::size_t HeapBlock::footprint(std::uint32_t size) {
  const std::size_t with_header = kHeaderBytes + size;
  return uses_large_source(with_header) ? large_source->size_class(with_header)
                                        : malloc_footprint(allocation_bytes(with_header));
}

BlockRef HeapBlock::create(std::uint32_t size, MemoryAccount* account, std::uint32_t charge_bytes,
                           void* owner) {
  const std::size_t bytes_wanted = kHeaderBytes + size;
  const bool large = uses_large_source(bytes_wanted);
  const std::size_t granted = large ? large_source->size_class(bytes_wanted) : 0;
  void* memory =
      large ? large_source->allocate(bytes_wanted) : allocate_from_heap(allocation_bytes(bytes_wanted));
  if (memory == nullptr) {
    return {};
  }
  auto* bytes = static_cast<std::uint8_t*>(memory) + kHeaderBytes;
  auto* header = new (memory) HeapBlockHeader{
      {bytes, size, &HeapBlock::release, owner}, account, 0, static_cast<std::uint32_t>(granted)};
  charge_up_to(header->block, std::min(size, charge_bytes));
  return BlockRef(&header->block);
}

void HeapBlock::charge_up_to(SharedBlock& block, std::uint32_t bytes) {
  HeapBlockHeader& header = header_of(block);
  const auto want = static_cast<std::uint32_t>(cost_of(header, std::min(bytes, block.capacity())));
  if (header.account != nullptr && want > header.charged) {
    header.account->charge(want - header.charged);
    header.charged = want;
  }
}

void HeapBlock::release(SharedBlock* block) {
  HeapBlockHeader& header = header_of(*block);
  if (header.account != nullptr) {
    header.account->release(header.charged);
  }
  const std::uint32_t granted = header.granted;
  const std::size_t with_header = kHeaderBytes + block->capacity();
  header.~HeapBlockHeader();
  if (granted == 0) {
    free_to_heap(&header, allocation_bytes(with_header));
  } else {
    large_source->deallocate(&header, granted);
  }
}

}  // namespace ringhub
