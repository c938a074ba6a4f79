// PendingMessages: the LINE protocol's messages that were forwarded and not yet answered, for the X
// values one shard owns. An `ok X` answers the oldest pending `message X`; a connection that goes away
// drops the messages it sent and hands back the ones it was asked to answer, to be forwarded again.
#pragma once

#include <boost/intrusive/list.hpp>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/keyed_hash.hpp"

namespace ringhub {

// A line connection anywhere in the hub: the shard that owns it and its id there.
struct LineEndpoint {
  std::uint32_t shard = 0;
  std::uint64_t conn = 0;

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy misreads the defaulted comparison
  friend auto operator<=>(const LineEndpoint&, const LineEndpoint&) = default;
};

}  // namespace ringhub

template <>
struct std::hash<ringhub::LineEndpoint> {
  std::size_t operator()(const ringhub::LineEndpoint& e) const noexcept {
    // splitmix64's finalizer over both fields: connection ids are sequential, so spread them.
    std::uint64_t h = e.conn ^ (static_cast<std::uint64_t>(e.shard) << 48);
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
    return static_cast<std::size_t>(h ^ (h >> 31));
  }
};

namespace ringhub {

// Contract: owned and used by the one shard that owns these X values (the hub shards by hash of X);
// not thread-safe. Every entry is a message X sent by `origin` and forwarded to `target`, with a
// sequence number in add order that is its age. Entries are indexed by X (oldest first), by origin
// and by target, so add and answer are O(1) on average and drop_origin/take_target cost in proportion
// to that endpoint's entries. Each distinct X is stored once. When nothing is pending, nothing is held
// but the (empty) hash tables.
//
// On a disconnect call drop_origin first, then take_target: a message the connection sent to itself
// is then dropped rather than handed back.
class PendingMessages {
 public:
  // The entry an `ok X` answered. `target` is where it was last forwarded (it may have gone since).
  struct Answered {
    std::uint64_t seq = 0;
    LineEndpoint origin;
    LineEndpoint target;
  };
  // An entry whose target went away. `x` views the stored X: valid while the entry is pending, so
  // copy it before anything else can answer or drop it.
  struct Orphan {
    std::uint64_t seq = 0;
    std::string_view x;
    LineEndpoint origin;  // who sent it: a forward back to its own origin is not held against it
  };
  // How many keys each internal table holds; all zero once nothing is pending (for tests).
  struct IndexSizes {
    std::size_t entries = 0;
    std::size_t xs = 0;
    std::size_t origins = 0;
    std::size_t targets = 0;
    std::size_t longest_x_bucket = 0;  // X values in the fullest bucket of the X table
  };

  // `x_hash` hashes every X (client-chosen bytes): a keyed hash, so a client cannot aim X values at
  // one bucket.
  explicit PendingMessages(const KeyedHash& x_hash) : by_x_(0, XHash{x_hash}) {}
  PendingMessages(const PendingMessages&) = delete;
  PendingMessages& operator=(const PendingMessages&) = delete;
  ~PendingMessages();

  // Records `message x` from origin forwarded to target. Returns its sequence number (1, 2, 3...).
  std::uint64_t add(std::string_view x, LineEndpoint origin, LineEndpoint target);

  // Removes and returns the oldest pending entry with this X; nullopt if none (an unmatched ok).
  std::optional<Answered> answer(std::string_view x);

  // Removes every entry `origin` sent (orphans included). Returns how many.
  std::size_t drop_origin(LineEndpoint origin);

  // Detaches every entry still waiting on `target` and returns them in the order they were forwarded
  // there. They stay
  // pending, keep their age and can still be answered; the caller forwards each again and calls
  // retarget, or drop when no live connection is left.
  std::vector<Orphan> take_target(LineEndpoint target);

  // Points a pending entry at a new target. False if it is no longer pending (answered or dropped
  // meanwhile): then it must not be forwarded.
  bool retarget(std::uint64_t seq, LineEndpoint target);

  // Removes one pending entry. False if it is no longer pending.
  bool drop(std::uint64_t seq);

  std::size_t size() const { return entries_.size(); }
  std::size_t bytes() const { return bytes_; }  // bytes of X held, each distinct X counted once
  IndexSizes index_sizes() const;

 private:
  struct Group;
  using Hook = boost::intrusive::list_member_hook<>;  // safe mode: destroying a linked entry asserts
  struct Entry {
    std::uint64_t seq = 0;
    LineEndpoint origin;
    LineEndpoint target;
    Group* group = nullptr;  // its X
    Hook by_x;               // in group->entries, in age order
    Hook by_origin;          // in origins_[origin]
    Hook by_target;          // in targets_[target]; unlinked while the entry is an orphan
  };
  template <Hook Entry::*member, bool constant_size>
  using EntryList = boost::intrusive::list<Entry, boost::intrusive::member_hook<Entry, Hook, member>,
                                           boost::intrusive::constant_time_size<constant_size>>;
  using AgeList = EntryList<&Entry::by_x, false>;
  using OriginList = EntryList<&Entry::by_origin, false>;
  using TargetList = EntryList<&Entry::by_target, true>;
  // The entries that share one X, oldest first. Adds append, and retargeting does not move an entry
  // here, so the front is always the oldest.
  struct Group {
    AgeList entries;
    const std::string* x = nullptr;  // the key of this group in by_x_
  };
  // Lets by_x_ be searched with a string_view, without building a std::string.
  struct XHash {
    using is_transparent = void;
    KeyedHash hash;
    std::size_t operator()(std::string_view x) const noexcept { return hash(x); }
  };

  Group& group_for(std::string_view x);
  void erase_entry(Entry& e);
  void unlink_x(Entry& e);
  void unlink_origin(Entry& e);
  void unlink_target(Entry& e);

  std::uint64_t next_seq_ = 1;
  std::size_t bytes_ = 0;
  std::unordered_map<std::uint64_t, Entry> entries_;  // owns the entries; nodes never move
  std::unordered_map<std::string, Group, XHash, std::equal_to<>> by_x_;
  std::unordered_map<LineEndpoint, OriginList> origins_;
  std::unordered_map<LineEndpoint, TargetList> targets_;
};

}  // namespace ringhub
