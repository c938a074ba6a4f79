// Registry: one shard's live relay connections, found by user id in O(1) and walked in ascending
// id order (for LIST). Intrusive: the connection carries the hooks, so insert and erase never allocate
// except when the hash table doubles.
#pragma once

#include <boost/intrusive/list.hpp>
#include <boost/intrusive/unordered_set.hpp>
#include <cstddef>
#include <memory>
#include <vector>

#include "core/protocol.hpp"

namespace ringhub {

namespace bi = boost::intrusive;

// Base of anything the registry holds (a transport Connection). Auto-unlink is off: the registry
// owner erases explicitly, which keeps the contract visible.
struct RegistryEntry : bi::list_base_hook<bi::link_mode<bi::normal_link>>,
                       bi::unordered_set_base_hook<bi::link_mode<bi::normal_link>, bi::store_hash<false>> {
  protocol::UserId id = 0;
};

// Contract: owned and used by one shard's thread. Ids must be inserted in increasing order (ids come
// from one global counter at accept time on this shard's thread), which keeps the list sorted.
class Registry {
 public:
  Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  void insert(RegistryEntry& entry);
  void erase(RegistryEntry& entry);
  RegistryEntry* find(protocol::UserId id);
  std::size_t size() const { return by_order_.size(); }

  // Appends every id except `except`, ascending.
  void append_ids(std::vector<protocol::UserId>& out, protocol::UserId except) const;

  template <typename Fn>
  void for_each(Fn&& fn) {
    for (auto it = by_order_.begin(); it != by_order_.end();) {
      RegistryEntry& e = *it++;  // fn may erase e
      fn(e);
    }
  }

 private:
  struct IdHash {
    std::size_t operator()(const RegistryEntry& e) const { return mix(e.id); }
    std::size_t operator()(protocol::UserId id) const { return mix(id); }
    static std::size_t mix(protocol::UserId id) {
      return static_cast<std::size_t>(id * 0x9E3779B97F4A7C15ULL >> 17);
    }
  };
  struct IdEqual {
    bool operator()(const RegistryEntry& a, const RegistryEntry& b) const { return a.id == b.id; }
    bool operator()(protocol::UserId id, const RegistryEntry& e) const { return id == e.id; }
    bool operator()(const RegistryEntry& e, protocol::UserId id) const { return id == e.id; }
  };
  using OrderList = bi::list<RegistryEntry, bi::constant_time_size<true>>;
  using IdSet = bi::unordered_set<RegistryEntry, bi::hash<IdHash>, bi::equal<IdEqual>,
                                  bi::power_2_buckets<true>, bi::constant_time_size<true>>;

  void rehash_if_needed();

  OrderList by_order_;
  std::size_t bucket_count_;
  std::unique_ptr<IdSet::bucket_type[]> buckets_;
  IdSet by_id_;
};

}  // namespace ringhub
