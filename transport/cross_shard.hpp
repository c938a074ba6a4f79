// Messages between shards. A shard never touches another shard's connections or buffers: it posts a
// message, and batches of messages travel as one IORING_OP_MSG_RING CQE per destination per loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/maybe_tally.hpp"
#include "core/memory_account.hpp"
#include "core/protocol.hpp"
#include "core/shard_message.hpp"
#include "core/shared_block.hpp"

namespace ringhub {

struct Connection;

// A relay's receivers on another shard. The origin keeps `original` alive; the target delivers
// through `proxy`, a block of its own over the same bytes, and when the proxy's last reference goes
// the message returns to the origin as kRelayDone, which drops `original` there (the owner's thread).
struct RelayMessage : ShardMessage {
  RelayMessage(unsigned origin, BlockRef block, std::uint32_t off, std::uint32_t len)
      : ShardMessage(Kind::kRelay, origin), original(std::move(block)), offset(off), length(len) {}
  BlockRef original;  // touched only on the origin shard
  SharedBlock proxy;  // touched only on the target shard
  std::uint32_t offset;
  std::uint32_t length;
  std::vector<protocol::UserId> receivers;  // owned by the target: a miss is a departed receiver
  std::vector<protocol::UserId> maybe;      // owner unknown (shared directory slot): a miss is no news
  std::vector<std::uint8_t> maybe_found;    // set by the target: which `maybe` ids it delivered to
  MaybeTally* tally = nullptr;   // on the origin (core/maybe_tally.hpp): combines every shard's maybe_found
  void* target_shard = nullptr;  // set by the target, for the proxy's release
};

// One shard's share of a LIST: the target appends its ids and sends the message back as kListPart.
struct ListGather;
struct ListMessage : ShardMessage {
  ListMessage(unsigned origin, ListGather* g) : ShardMessage(Kind::kListQuery, origin), gather(g) {}
  ListGather* gather;  // lives on the origin shard
  std::vector<protocol::UserId> ids;
};

// A LIST being answered by every shard; lives on the requester's shard. Every LIST one connection
// sends while a gather of its own is already under way joins one next gather, so a connection has at
// most two (one asking, one waiting to ask) however many LISTs it pipelines, and each answer is still
// gathered after its request arrived. The LISTs one gather answers share one reply block.
struct ListGather {
  struct Slot {
    std::uint64_t position = 0;  // of the placeholder in the requester's outbound queue
    std::uint32_t token = 0;
  };
  Connection* requester = nullptr;  // kept alive by a pending_ops count
  std::vector<Slot> slots;          // one per LIST it answers, in request order
  unsigned remaining = 0;
  std::vector<protocol::UserId> ids;
  std::size_t charged_bytes = 0;  // as ShardMessage::charged_bytes; on the requester's shard only
};

// Heap bytes behind a vector's capacity (0 when it never allocated).
template <class T>
std::size_t vector_footprint(const std::vector<T>& items) {
  return items.capacity() == 0 ? 0 : malloc_footprint(items.capacity() * sizeof(T));
}

// Heap bytes a message holds now: itself and what its vectors and strings allocated. A LIST part
// carries up to every id of a shard, so at 100k clients one LIST's parts hold 800 kB until the
// gather completes: counted, they are under the budget like every other byte held for clients.
inline std::size_t message_footprint(const ShardMessage& message) {
  switch (message.kind) {
    case ShardMessage::Kind::kRelay:
    case ShardMessage::Kind::kRelayDone: {
      const auto& relay = static_cast<const RelayMessage&>(message);
      return malloc_footprint(sizeof(RelayMessage)) + vector_footprint(relay.receivers) +
             vector_footprint(relay.maybe) + vector_footprint(relay.maybe_found);
    }
    case ShardMessage::Kind::kListQuery:
    case ShardMessage::Kind::kListPart:
      return malloc_footprint(sizeof(ListMessage)) +
             vector_footprint(static_cast<const ListMessage&>(message).ids);
    default: {
      const std::string& x = static_cast<const LineMessage&>(message).x;
      const bool on_heap = x.capacity() > std::string().capacity();  // beyond the small-string buffer
      return malloc_footprint(sizeof(LineMessage)) + (on_heap ? malloc_footprint(x.capacity() + 1) : 0);
    }
  }
}

inline std::size_t gather_footprint(const ListGather& gather) {
  return malloc_footprint(sizeof(ListGather)) + vector_footprint(gather.slots) + vector_footprint(gather.ids);
}

inline std::size_t tally_footprint(const MaybeTally& tally) {
  return malloc_footprint(sizeof(MaybeTally)) + vector_footprint(tally.found);
}

// What one MSG_RING carries: every message one shard had for another in one loop iteration.
struct ShardBatch {
  std::vector<ShardMessage*> messages;
};

}  // namespace ringhub
