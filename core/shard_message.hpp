// The header every message between shards starts with, and the line protocol's messages. Shards
// never touch each other's connections or buffers: they post these (transport/cross_shard.hpp has the
// relay's and LIST's, and how they travel). Pure data, so the line service can be tested without rings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ringhub {

struct ShardMessage {
  enum class Kind : std::uint8_t {
    kRelay,
    kRelayDone,
    kListQuery,
    kListPart,
    kLineAdd,         // to X's owner: record `message X` from `endpoint`, forward it
    kLineForward,     // to a target shard: write `message X` to a random local connection
    kLineAssigned,    // to X's owner: entry `seq` went to `endpoint`
    kLineNoTarget,    // to X's owner: the chosen shard had no line connection; choose again
    kLineOk,          // to X's owner: someone answered `ok X`
    kLineDeliverOk,   // to the origin's shard: write `ok X` to `endpoint`
    kLineOriginGone,  // to every shard: drop what `endpoint` sent
    kLineTargetGone,  // to every shard: forward again what `endpoint` was asked to answer
  };
  explicit ShardMessage(Kind k, unsigned origin) : kind(k), origin_shard(origin) {}
  Kind kind;
  unsigned origin_shard;
  // What the message is charged at in the budget. Whoever posts it brings the charge up to date
  // (the target grows a LIST part's ids or a relay's maybe_found before posting it back), whoever
  // deletes it releases it; a shard's account is signed, only the hub-wide sum counts.
  std::size_t charged_bytes = 0;
};

// Every line-protocol message between shards: which fields matter depends on the kind.
struct LineMessage : ShardMessage {
  LineMessage(Kind k, unsigned origin) : ShardMessage(k, origin) {}
  std::string x;
  std::uint32_t endpoint_shard = 0;
  std::uint64_t endpoint_conn = 0;
  std::uint64_t seq = 0;
  unsigned tries = 0;         // kLineForward/kLineNoTarget: shards tried that had nobody
  bool hub_stopping = false;  // kLineTargetGone: the target left because the hub is stopping
  // kLineForward/kLineNoTarget: who sent the message. kLineDeliverOk: the answered message had been
  // forwarded back to that sender, so it was never held against the sender's pending allowance.
  std::uint32_t sender_shard = 0;
  std::uint64_t sender_conn = 0;
  bool self_loop = false;
};

}  // namespace ringhub
