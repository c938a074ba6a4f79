// PendingMessages: entries in hash tables by sequence number, X, origin and target, linked into
// Boost.Intrusive lists so that removing one never searches; see core/line_pending.hpp.
#include "core/line_pending.hpp"

#include <algorithm>
#include <cassert>
#include <utility>

namespace ringhub {

PendingMessages::~PendingMessages() {
  // Unlink every entry before the entries themselves are destroyed (safe-mode hooks check it).
  targets_.clear();
  origins_.clear();
  by_x_.clear();
}

std::uint64_t PendingMessages::add(std::string_view x, LineEndpoint origin, LineEndpoint target) {
  const std::uint64_t seq = next_seq_++;
  Entry& e = entries_.try_emplace(seq).first->second;
  e.seq = seq;
  e.origin = origin;
  e.target = target;
  e.group = &group_for(x);
  e.group->entries.push_back(e);
  origins_[origin].push_back(e);
  targets_[target].push_back(e);
  return seq;
}

std::optional<PendingMessages::Answered> PendingMessages::answer(std::string_view x) {
  const auto it = by_x_.find(x);
  if (it == by_x_.end()) {
    return std::nullopt;
  }
  Entry& oldest = it->second.entries.front();
  const Answered answered{oldest.seq, oldest.origin, oldest.target};
  erase_entry(oldest);
  return answered;
}

std::size_t PendingMessages::drop_origin(LineEndpoint origin) {
  const auto it = origins_.find(origin);
  if (it == origins_.end()) {
    return 0;
  }
  OriginList list = std::move(it->second);
  origins_.erase(it);
  std::size_t dropped = 0;
  while (!list.empty()) {
    Entry& e = list.front();
    list.pop_front();
    erase_entry(e);
    ++dropped;
  }
  return dropped;
}

std::vector<PendingMessages::Orphan> PendingMessages::take_target(LineEndpoint target) {
  const auto it = targets_.find(target);
  if (it == targets_.end()) {
    return {};
  }
  TargetList& list = it->second;
  std::vector<Orphan> orphans;
  orphans.reserve(list.size());
  while (!list.empty()) {
    Entry& e = list.front();
    list.pop_front();
    orphans.push_back(Orphan{e.seq, *e.group->x, e.origin});
  }
  targets_.erase(it);
  return orphans;
}

bool PendingMessages::retarget(std::uint64_t seq, LineEndpoint target) {
  const auto it = entries_.find(seq);
  if (it == entries_.end()) {
    return false;
  }
  Entry& e = it->second;
  unlink_target(e);
  e.target = target;
  targets_[target].push_back(e);
  return true;
}

bool PendingMessages::drop(std::uint64_t seq) {
  const auto it = entries_.find(seq);
  if (it == entries_.end()) {
    return false;
  }
  erase_entry(it->second);
  return true;
}

PendingMessages::IndexSizes PendingMessages::index_sizes() const {
  std::size_t longest_x_bucket = 0;
  for (std::size_t b = 0; b < by_x_.bucket_count(); ++b) {
    longest_x_bucket = std::max(longest_x_bucket, by_x_.bucket_size(b));
  }
  return {entries_.size(), by_x_.size(), origins_.size(), targets_.size(), longest_x_bucket};
}

PendingMessages::Group& PendingMessages::group_for(std::string_view x) {
  auto it = by_x_.find(x);
  if (it == by_x_.end()) {
    it = by_x_.try_emplace(std::string(x)).first;
    it->second.x = &it->first;
    bytes_ += x.size();
  }
  return it->second;
}

void PendingMessages::erase_entry(Entry& e) {
  unlink_x(e);
  unlink_origin(e);
  unlink_target(e);
  const std::uint64_t seq = e.seq;  // not a reference into the node being erased
  entries_.erase(seq);
}

void PendingMessages::unlink_x(Entry& e) {
  Group& group = *e.group;
  group.entries.erase(group.entries.iterator_to(e));
  if (group.entries.empty()) {
    bytes_ -= group.x->size();
    const auto it = by_x_.find(std::string_view(*group.x));
    assert(it != by_x_.end());
    by_x_.erase(it);
  }
}

void PendingMessages::unlink_origin(Entry& e) {
  if (!e.by_origin.is_linked()) {
    return;  // drop_origin already took it off
  }
  const auto it = origins_.find(e.origin);
  assert(it != origins_.end());
  it->second.erase(it->second.iterator_to(e));
  if (it->second.empty()) {
    origins_.erase(it);
  }
}

void PendingMessages::unlink_target(Entry& e) {
  if (!e.by_target.is_linked()) {
    return;  // an orphan
  }
  const auto it = targets_.find(e.target);
  assert(it != targets_.end());
  it->second.erase(it->second.iterator_to(e));
  if (it->second.empty()) {
    targets_.erase(it);
  }
}

}  // namespace ringhub
