// How messages between shards travel: every message one shard has for another in one loop iteration
// goes as one batch, one IORING_OP_MSG_RING CQE per destination. The messages themselves are pure
// data (core/shard_message.hpp).
#pragma once

#include <vector>

#include "core/shard_message.hpp"

namespace ringhub {

struct ShardBatch {
  std::vector<ShardMessage*> messages;
};

}  // namespace ringhub
