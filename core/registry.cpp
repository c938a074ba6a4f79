// Registry: Boost.Intrusive list (ascending ids) plus a power-of-two hash set that doubles as it fills.
#include "core/registry.hpp"

#include <cassert>

namespace ringhub {

namespace {
constexpr std::size_t kInitialBuckets = 64;
}

Registry::Registry()
    : bucket_count_(kInitialBuckets),
      buckets_(std::make_unique<IdSet::bucket_type[]>(kInitialBuckets)),
      by_id_(IdSet::bucket_traits(buckets_.get(), kInitialBuckets)) {}

Registry::~Registry() {
  by_id_.clear();
  by_order_.clear();
}

void Registry::insert(RegistryEntry& entry) {
  assert(by_order_.empty() || by_order_.back().id < entry.id);
  by_order_.push_back(entry);
  by_id_.insert(entry);
  rehash_if_needed();
}

void Registry::erase(RegistryEntry& entry) {
  by_id_.erase(by_id_.iterator_to(entry));
  by_order_.erase(by_order_.iterator_to(entry));
}

RegistryEntry* Registry::find(protocol::UserId id) {
  auto it = by_id_.find(id, IdHash(), IdEqual());
  return it == by_id_.end() ? nullptr : &*it;
}

void Registry::append_ids(std::vector<protocol::UserId>& out, protocol::UserId except) const {
  out.reserve(out.size() + by_order_.size());
  for (const RegistryEntry& e : by_order_) {
    if (e.id != except) {
      out.push_back(e.id);
    }
  }
}

void Registry::rehash_if_needed() {
  if (by_id_.size() <= bucket_count_) {
    return;
  }
  const std::size_t count = bucket_count_ * 2;
  auto buckets = std::make_unique<IdSet::bucket_type[]>(count);
  by_id_.rehash(IdSet::bucket_traits(buckets.get(), count));
  buckets_ = std::move(buckets);
  bucket_count_ = count;
}

}  // namespace ringhub
