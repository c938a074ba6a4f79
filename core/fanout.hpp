// FanoutPlanner: turns a RELAY's receiver list into who gets the body where: receivers on this
// shard, and per other shard the ids to hand over. Duplicates and the sender itself are dropped here.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "core/id_directory.hpp"
#include "core/protocol.hpp"

namespace ringhub {

struct FanoutPlan {
  std::vector<protocol::UserId> local;                // receivers that may live on this shard
  std::vector<std::vector<protocol::UserId>> remote;  // [shard] -> receivers that live there
  std::vector<protocol::UserId> everywhere;           // owner unknown (shared directory slot): ask all
  std::size_t skipped = 0;                            // duplicates, the sender, ids nobody owns
};

// Contract: one planner per shard, reused for every relay so its vectors stop allocating.
class FanoutPlanner {
 public:
  FanoutPlanner(unsigned shard_count, unsigned this_shard, const IdDirectory* directory);

  // Plans one relay. With one shard the directory is not consulted. The plan stays valid until the
  // next call.
  const FanoutPlan& plan(protocol::UserId sender, std::span<const protocol::UserId> receivers);

 private:
  void route(protocol::UserId id);

  unsigned shard_count_;
  unsigned this_shard_;
  const IdDirectory* directory_;
  std::vector<protocol::UserId> unique_;
  FanoutPlan plan_;
};

}  // namespace ringhub
