// The messages between shards: the header every one starts with, the relay's and LIST's, and the line
// protocol's. Shards never touch each other's connections or buffers: they post these
// (transport/cross_shard.hpp says how they travel). Pure data, so the services test without rings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/memory_account.hpp"
#include "core/protocol.hpp"
#include "core/shared_block.hpp"

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
  // Virtual: whoever ends a message may hold it as a ShardMessage* (a router, a test's simulator).
  virtual ~ShardMessage() = default;
  ShardMessage(const ShardMessage&) = delete;
  ShardMessage& operator=(const ShardMessage&) = delete;
  Kind kind;
  unsigned origin_shard;
  // Whether the relay service (core/relay_service) handles this kind; the line service has the rest.
  static bool is_relay_kind(Kind k) {
    return k == Kind::kRelay || k == Kind::kRelayDone || k == Kind::kListQuery || k == Kind::kListPart;
  }
  // What the message is charged at in the budget. Whoever posts it brings the charge up to date
  // (the target grows a LIST part's ids or a relay's maybe_found before posting it back), whoever
  // deletes it releases it; a shard's account is signed, only the hub-wide sum counts.
  std::size_t charged_bytes = 0;
};

class RelayService;
struct ListGather;

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
  struct MaybeTally* tally = nullptr;  // on the origin (core/maybe_tally.hpp): combines every maybe_found
  RelayService* target = nullptr;      // set by the target, for the proxy's release
};

// One shard's share of a LIST: the target appends its ids and sends the message back as kListPart.
struct ListMessage : ShardMessage {
  ListMessage(unsigned origin, ListGather* g) : ShardMessage(Kind::kListQuery, origin), gather(g) {}
  ListGather* gather;  // lives on the origin shard
  std::vector<protocol::UserId> ids;
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
  // kLineForward: nobody was live to pick, so it goes to its sender, if that is still registered
  // (half-closed: it reads on, and the sender is always a candidate).
  bool to_sender = false;
};

// Deletes a message (or anything else that carries its charge in `charged_bytes`) and releases that
// charge from the account of whichever shard it ends on.
template <class Charged>
void retire(MemoryAccount& account, Charged* object) {
  account.release(object->charged_bytes);
  delete object;
}

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

}  // namespace ringhub
