// LargeBlockMemory: one mmap per large block, and a mutex-guarded cache of freed blocks by size class,
// bounded by kCacheLimitBytes. A mutex is cheap at this size: each lock moves 64 KiB to 1 MiB.
#include "transport/large_block_memory.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <map>
#include <mutex>
#include <vector>

#include "core/shared_block.hpp"

namespace ringhub {

namespace {

struct Cache {
  std::mutex mutex;
  std::map<std::size_t, std::vector<void*>> free_by_class;  // guarded by mutex
  std::atomic<std::uint64_t> cached{0};
  std::atomic<std::uint64_t> mapped{0};
};

// Never destroyed: blocks may be freed by threads still running while static objects are torn down.
Cache& cache() {
  static auto* instance = new Cache;
  return *instance;
}

void* take_cached(Cache& state, std::size_t granted) {
  const std::lock_guard lock(state.mutex);
  auto found = state.free_by_class.find(granted);
  if (found == state.free_by_class.end() || found->second.empty()) {
    return nullptr;
  }
  void* memory = found->second.back();
  found->second.pop_back();
  state.cached.fetch_sub(granted, std::memory_order_relaxed);
  return memory;
}

bool keep_cached(Cache& state, void* memory, std::size_t granted) {
  const std::lock_guard lock(state.mutex);
  if (state.cached.load(std::memory_order_relaxed) + granted > LargeBlockMemory::kCacheLimitBytes) {
    return false;
  }
  state.free_by_class[granted].push_back(memory);
  state.cached.fetch_add(granted, std::memory_order_relaxed);
  return true;
}

void unmap(Cache& state, void* memory, std::size_t granted) {
  // munmap of a range we mapped cannot fail short of a bug; the count follows what the kernel holds.
  if (munmap(memory, granted) == 0) {
    state.mapped.fetch_sub(granted, std::memory_order_relaxed);
  }
}

const LargeBlockSource kSource{
    LargeBlockMemory::kMinBytes,
    &LargeBlockMemory::size_class,
    &LargeBlockMemory::allocate,
    &LargeBlockMemory::deallocate,
};
}  // namespace

std::size_t LargeBlockMemory::size_class(std::size_t bytes) {
  const std::size_t step = std::max(std::bit_floor(bytes) / kClassesPerDoubling, kPageBytes);
  return (bytes + step - 1) / step * step;
}

void LargeBlockMemory::install() {
  static std::once_flag installed;
  std::call_once(installed, [] { HeapBlock::set_large_block_source(&kSource); });
}

void LargeBlockMemory::release_cache() {
  Cache& state = cache();
  std::map<std::size_t, std::vector<void*>> released;
  {
    const std::lock_guard lock(state.mutex);
    released.swap(state.free_by_class);
    state.cached.store(0, std::memory_order_relaxed);
  }
  for (const auto& [granted, blocks] : released) {
    for (void* memory : blocks) {
      unmap(state, memory, granted);
    }
  }
}

void* LargeBlockMemory::allocate(std::size_t bytes) {
  Cache& state = cache();
  const std::size_t granted = size_class(bytes);
  if (void* memory = take_cached(state, granted)) {
    return memory;
  }
  void* memory = mmap(nullptr, granted, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    return nullptr;  // the caller sees an empty block: memory is exhausted
  }
  state.mapped.fetch_add(granted, std::memory_order_relaxed);
  return memory;
}

void LargeBlockMemory::deallocate(void* memory, std::size_t granted) {
  Cache& state = cache();
  if (keep_cached(state, memory, granted)) {
    return;
  }
  unmap(state, memory, granted);
}

std::uint64_t LargeBlockMemory::cached_bytes() {
  return cache().cached.load(std::memory_order_relaxed);
}

std::uint64_t LargeBlockMemory::mapped_bytes() {
  return cache().mapped.load(std::memory_order_relaxed);
}

}  // namespace ringhub
