// IdDirectory: lock-free id -> shard table; see core/id_directory.hpp.
#include "core/id_directory.hpp"

#include <algorithm>
#include <bit>

namespace ringhub {

IdDirectory::IdDirectory(std::size_t min_slots)
    : mask_(std::bit_ceil(std::max<std::size_t>(min_slots, 64)) - 1),
      slots_(std::make_unique<std::atomic<std::uint64_t>[]>(mask_ + 1)) {}

namespace {
std::uint64_t owner_of(std::uint64_t word) {
  return word & 0xFF;
}
std::uint64_t displaced_of(std::uint64_t word) {
  return (word >> 8) & 0xFF;
}
}  // namespace

void IdDirectory::publish(protocol::UserId id, unsigned shard) {
  auto& word = slot(id);
  std::uint64_t old = word.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t displaced = displaced_of(old);
    if (owner_of(old) != 0 && displaced < kDisplacedStuck) {
      ++displaced;  // the current owner stays alive elsewhere: its lookups must ask every shard
    }
    const std::uint64_t next = (id << kIdShift) | (displaced << kDisplacedShift) | (shard + 1);
    if (word.compare_exchange_weak(old, next, std::memory_order_release, std::memory_order_relaxed)) {
      return;
    }
  }
}

void IdDirectory::retract(protocol::UserId id) {
  auto& word = slot(id);
  std::uint64_t old = word.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t next = old;
    if ((old >> kIdShift) == id && owner_of(old) != 0) {
      next = old & (kByte << kDisplacedShift);  // the owner leaves; displaced ids stay counted
    } else if (displaced_of(old) > 0 && displaced_of(old) < kDisplacedStuck) {
      next = old - (std::uint64_t{1} << kDisplacedShift);  // a displaced id leaves
    } else {
      return;
    }
    if (word.compare_exchange_weak(old, next, std::memory_order_release, std::memory_order_relaxed)) {
      return;
    }
  }
}

IdDirectory::Lookup IdDirectory::lookup(protocol::UserId id) const {
  const std::uint64_t word = slot(id).load(std::memory_order_acquire);
  if ((word >> kIdShift) == id && owner_of(word) != 0) {
    return {Where::kShard, static_cast<unsigned>(owner_of(word) - 1)};
  }
  if (displaced_of(word) != 0) {
    return {Where::kAskEveryShard, 0};
  }
  return {};
}

}  // namespace ringhub
