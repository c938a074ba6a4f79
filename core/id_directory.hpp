// IdDirectory: which shard owns a user id, readable by every shard without locks. A fixed table of
// packed atomic words indexed by id modulo its size; memory is fixed at start whatever the churn.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "core/protocol.hpp"

namespace ringhub {

// Contract: publish and retract are called only by the shard that owns the id; lookup by any shard.
// Ids are dense (one global counter), so a table of at least 2x the live connections rarely sees two
// live ids in one slot. When it does, the newer id takes the slot and the slot counts the live ids it
// displaced; lookups of ids that land in a slot with displaced ids answer kAskEveryShard: slower
// (every shard is asked) but never wrong. The count falls as displaced ids leave, so a slot is
// exact again once they are gone (past 255 displaced ids the count sticks: still never wrong).
class IdDirectory {
 public:
  // Shard indexes must fit kMaxShards; the rest of the word holds the id.
  static constexpr unsigned kMaxShards = 254;
  static constexpr protocol::UserId kMaxId = (protocol::UserId{1} << 48) - 1;

  enum class Where : std::uint8_t { kUnknown, kShard, kAskEveryShard };
  struct Lookup {
    Where where = Where::kUnknown;
    unsigned shard = 0;
  };

  explicit IdDirectory(std::size_t min_slots);

  void publish(protocol::UserId id, unsigned shard);
  void retract(protocol::UserId id);
  Lookup lookup(protocol::UserId id) const;

  std::size_t slot_count() const { return mask_ + 1; }

 private:
  // Word layout: id << 16 | displaced live ids << 8 | shard + 1 (0 = no owner). Ids below 2^48.
  static constexpr unsigned kIdShift = 16;
  static constexpr unsigned kDisplacedShift = 8;
  static constexpr std::uint64_t kByte = 0xFF;
  static constexpr std::uint64_t kDisplacedStuck = 0xFF;

  std::atomic<std::uint64_t>& slot(protocol::UserId id) const { return slots_[id & mask_]; }

  std::uint64_t mask_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> slots_;
};

}  // namespace ringhub
