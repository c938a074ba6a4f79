// IdDirectory: lock-free id -> shard table; see core/id_directory.hpp.
#include "core/id_directory.hpp"

#include <algorithm>
#include <bit>

namespace ringhub {

IdDirectory::IdDirectory(std::size_t min_slots)
    : mask_(std::bit_ceil(std::max<std::size_t>(min_slots, 64)) - 1),
      slots_(std::make_unique<std::atomic<std::uint64_t>[]>(mask_ + 1)) {}

void IdDirectory::publish(protocol::UserId id, unsigned shard) {
  auto& word = slot(id);
  std::uint64_t old = word.load(std::memory_order_relaxed);
  for (;;) {
    // A slot still naming another live id becomes shared; an empty slot keeps its shared bit (the
    // displaced id may still be alive elsewhere only if the bit was set when it was displaced).
    const bool occupied = (old & kShardMask) != 0;
    const std::uint64_t shared = (old & kSharedBit) | (occupied ? kSharedBit : 0);
    const std::uint64_t next = (id << 8) | shared | (shard + 1);
    if (word.compare_exchange_weak(old, next, std::memory_order_release, std::memory_order_relaxed)) {
      return;
    }
  }
}

void IdDirectory::retract(protocol::UserId id) {
  auto& word = slot(id);
  std::uint64_t old = word.load(std::memory_order_relaxed);
  // Only the id that holds the slot clears it; a displaced id leaves the newer owner alone.
  while ((old >> 8) == id && (old & kShardMask) != 0) {
    const std::uint64_t next = old & kSharedBit;
    if (word.compare_exchange_weak(old, next, std::memory_order_release, std::memory_order_relaxed)) {
      return;
    }
  }
}

IdDirectory::Lookup IdDirectory::lookup(protocol::UserId id) const {
  const std::uint64_t word = slot(id).load(std::memory_order_acquire);
  if ((word >> 8) == id && (word & kShardMask) != 0) {
    return {Where::kShard, static_cast<unsigned>((word & kShardMask) - 1)};
  }
  if ((word & kSharedBit) != 0) {
    return {Where::kAskEveryShard, 0};
  }
  return {};
}

}  // namespace ringhub
