// LargeBlockMemory: where the hub's large blocks (frames above 64 KiB) live. Each is mapped on its own
// and unmapped when freed, so the hub's RSS follows the memory it has charged instead of staying at a
// burst's peak in malloc's arenas; a small bounded cache keeps steady large-frame streams fault-free.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringhub {

// Contract: thread-safe (shards allocate and free concurrently); one process-wide instance.
class LargeBlockMemory {
 public:
  // Allocations from here up go through this memory; below it malloc serves them well (small
  // chunks fragment little and its arenas reuse them at once).
  static constexpr std::size_t kMinBytes = std::size_t{64} << 10;
  // Freed blocks kept mapped for reuse, in bytes. About 30 blocks of 1 MiB: enough for the frames a
  // busy shard set has in flight at once, small beside any budget (docs/design.md, "Memory model").
  static constexpr std::size_t kCacheLimitBytes = std::size_t{32} << 20;
  // Size classes per doubling: a block holds at most 1/kClassesPerDoubling more than was asked.
  static constexpr std::size_t kClassesPerDoubling = 16;

  // What an allocation of `bytes` (>= kMinBytes) holds: rounded up to its class, a whole number of
  // pages. Blocks of one class are interchangeable, which is what lets the cache reuse them.
  static std::size_t size_class(std::size_t bytes);

  // Makes this memory HeapBlock's large-block source. Start-up only (before any block exists);
  // calling it again does nothing.
  static void install();

  // Unmaps every cached block: the shards call it when a burst has ended, so an idle hub holds none.
  static void release_cache();

  static void* allocate(std::size_t bytes);
  static void deallocate(void* memory, std::size_t granted);

  // Figures for /metrics, from any thread.
  static std::uint64_t cached_bytes();
  static std::uint64_t mapped_bytes();  // blocks in use plus the cache
};

}  // namespace ringhub
