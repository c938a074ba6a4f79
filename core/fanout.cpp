// FanoutPlanner: dedupe (sort + unique, n <= 255), drop the sender, route each id by the directory.
#include "core/fanout.hpp"

#include <algorithm>

namespace ringhub {

FanoutPlanner::FanoutPlanner(unsigned shard_count, unsigned this_shard, const IdDirectory* directory)
    : shard_count_(shard_count), this_shard_(this_shard), directory_(directory) {
  plan_.remote.resize(shard_count);
  unique_.reserve(protocol::kMaxReceivers);
}

const FanoutPlan& FanoutPlanner::plan(protocol::UserId sender, std::span<const protocol::UserId> receivers) {
  plan_.local.clear();
  plan_.everywhere.clear();
  for (auto& ids : plan_.remote) {
    ids.clear();
  }
  unique_.assign(receivers.begin(), receivers.end());
  std::sort(unique_.begin(), unique_.end());
  unique_.erase(std::unique(unique_.begin(), unique_.end()), unique_.end());
  plan_.skipped = receivers.size() - unique_.size();
  for (const protocol::UserId id : unique_) {
    if (id == sender) {
      ++plan_.skipped;
      continue;
    }
    route(id);
  }
  return plan_;
}

void FanoutPlanner::route(protocol::UserId id) {
  if (shard_count_ == 1) {
    plan_.local.push_back(id);
    return;
  }
  const IdDirectory::Lookup where = directory_->lookup(id);
  switch (where.where) {
    case IdDirectory::Where::kUnknown: ++plan_.skipped; return;
    case IdDirectory::Where::kShard:
      if (where.shard == this_shard_) {
        plan_.local.push_back(id);
      } else {
        plan_.remote[where.shard].push_back(id);
      }
      return;
    case IdDirectory::Where::kAskEveryShard: plan_.everywhere.push_back(id); return;
  }
}

}  // namespace ringhub
