// MaybeTally: the origin's count of a relay's receivers whose shard was unknown (a shared directory
// slot), so every other shard was asked too. Once every shard answered, the ids nobody delivered to
// are counted as skipped, exactly once, whatever order the answers came back in.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ringhub {

struct MaybeTally {
  MaybeTally(unsigned shards_asked, std::size_t ids) : outstanding(shards_asked), found(ids) {}

  // Folds one shard's answer (a flag per id, in the plan's order). Returns whether it was the last.
  bool fold(std::span<const std::uint8_t> shard_found) {
    for (std::size_t i = 0; i < found.size() && i < shard_found.size(); ++i) {
      found[i] |= shard_found[i];
    }
    return --outstanding == 0;
  }
  // The ids no shard (the origin included) delivered to.
  std::uint64_t nobody_found() const {
    return static_cast<std::uint64_t>(std::count(found.begin(), found.end(), 0));
  }

  unsigned outstanding = 0;         // shards whose answer has not come back
  std::vector<std::uint8_t> found;  // per id of the plan's `everywhere` list; the origin sets its own
};

}  // namespace ringhub
