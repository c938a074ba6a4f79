// The relay protocol's semantics on one shard, with no ring and no socket: IDENTITY, LIST (gathered
// from every shard, replies in request order) and RELAY (one shared block fanned out to every
// receiver, those on other shards reached by message). The shard drives it through RelaySeam
// (transport/shard_relay.cpp); the tests through a fake seam and an N-shard simulator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/fanout.hpp"
#include "core/frame_assembler.hpp"
#include "core/id_directory.hpp"
#include "core/memory_account.hpp"
#include "core/peer.hpp"
#include "core/registry.hpp"
#include "core/shard_message.hpp"
#include "core/shared_block.hpp"
#include "core/stats.hpp"

namespace ringhub {

// The place a gathered reply holds in a peer's outbound queue until its bytes are known.
struct ReplySlot {
  std::uint64_t position = 0;
  std::uint32_t token = 0;
};

// Why the service asks for a copy (the copied-bytes counters, by reason).
enum class CopyReason : std::uint8_t {
  kCopyOut,  // a relay's bytes out of a receive buffer, once for all its receivers
  kReply,    // a reply the hub composed
  kBatch,    // a small relay copied for one receiver that cannot take it into a send batch at once
};

// What the service asks of its shard. Calls come on the shard's thread only.
class RelaySeam {
 public:
  // Queues `length` bytes of `block` from `offset` to `peer`, sharing the block. Nothing for a peer
  // that is closing. May find the peer a slow consumer and close it.
  virtual void send(RelayPeer& peer, const BlockRef& block, std::uint32_t offset, std::uint32_t length) = 0;
  // A block holding a copy of `bytes`, charged to this shard; empty when memory is exhausted.
  virtual BlockRef copy(std::span<const std::uint8_t> bytes, CopyReason reason) = 0;
  // Queues a copy of `bytes` to `peer` alone, charged to this shard and counted by `reason`; false
  // when memory is exhausted. Nothing for a peer that is closing. May find the peer a slow consumer.
  virtual bool send_copy(RelayPeer& peer, std::span<const std::uint8_t> bytes, CopyReason reason) = 0;
  // Holds the place of a reply in `peer`'s queue (it counts toward the slow-consumer limit).
  virtual ReplySlot hold_reply(RelayPeer& peer) = 0;
  // Fills the places held by hold_reply with `length` bytes of `block`.
  virtual void fill_replies(RelayPeer& peer, std::span<const ReplySlot> slots, const BlockRef& block,
                            std::uint32_t length) = 0;
  // Whether `peer` is being closed (its queue takes nothing more).
  virtual bool closing(const RelayPeer& peer) const = 0;
  // Whether `length` bytes sent to `peer` now are copied into its send batch before the shard reads
  // again. When that holds for every receiver of a frame lying in a receive buffer, the frame is lent to
  // them as it lies, not copied out: the buffer is free again by the next read.
  virtual bool sends_at_once(const RelayPeer& peer, std::uint32_t length) const = 0;
  // Keeps `peer` from being freed while the service refers to it (a LIST gather), and lets it go.
  virtual void hold(RelayPeer& peer) = 0;
  virtual void release(RelayPeer& peer) = 0;
  // Memory ran out holding `what` for `peer`: it cannot be served, close it.
  virtual void out_of_memory(RelayPeer& peer, std::string_view what) = 0;
  // Hands `message` to shard `target` (never this one); the seam owns it until it comes back.
  virtual void post(unsigned target, ShardMessage* message) = 0;

 protected:
  ~RelaySeam() = default;
};

// A LIST being answered by every shard; lives on the requester's shard. Every LIST one connection
// sends while a gather of its own is already under way joins one next gather, so a connection has at
// most two (one asking, one waiting to ask) however many LISTs it pipelines, and each answer is still
// gathered after its request arrived. The LISTs one gather answers share one reply block.
struct ListGather {
  RelayPeer* requester = nullptr;  // held (RelaySeam::hold) until the gather finishes
  std::vector<ReplySlot> slots;    // one per LIST it answers, in request order
  unsigned remaining = 0;          // shards whose part has not come back
  std::vector<protocol::UserId> ids;
  std::size_t charged_bytes = 0;  // as ShardMessage::charged_bytes; on the requester's shard only
};

struct RelayServiceConfig {
  unsigned shard_index = 0;
  unsigned shard_count = 1;
  // A relay up to this many bytes (the hub's batch threshold) to a few receivers on this shard needs
  // no shared block: each receiver takes it from its receive buffer or gets a copy of its own.
  std::uint32_t small_frame_bytes = 0;
};

// Contract: owned and used by one shard's thread. With several shards, the directory says which
// shard each relay peer lives on; every shard's service publishes its own peers there.
class RelayService {
 public:
  RelayService(const RelayServiceConfig& config, IdDirectory* directory, RelaySeam& seam,
               MemoryAccount& memory, ShardCounters& counters);
  RelayService(const RelayService&) = delete;
  RelayService& operator=(const RelayService&) = delete;

  // A relay connection arrived on this shard / is leaving it. Ids must arrive in increasing order
  // on each shard (core/registry.hpp).
  void add(RelayPeer& peer);
  void remove(RelayPeer& peer);
  // One whole, validated client frame from `peer`. A RELAY's frame bytes are rewritten in place.
  void on_frame(RelayPeer& peer, FrameView& frame);
  // A relay or LIST message another shard posted here (or one of ours coming back); takes it.
  void on_message(ShardMessage* message);

  // Messages this shard sent that must come back before it may exit.
  std::size_t awaiting_replies() const { return awaiting_replies_; }
  Registry& peers() { return peers_; }
  std::size_t peer_count() const { return peers_.size(); }

 private:
  void reply_identity(RelayPeer& peer);
  void reply_list(RelayPeer& peer);
  void relay(RelayPeer& peer, FrameView& frame);
  void send_copy(RelayPeer& peer, std::span<const std::uint8_t> bytes);
  // The block every receiver of a RELAY shares: the frame's own block, or one copy of the DELIVER
  // bytes out of the receive buffer (which must go back to the kernel now, not when the slowest
  // receiver reads). Empty if memory is exhausted.
  BlockRef deliver_block(const FrameView& frame, std::uint32_t& offset, std::uint32_t length);
  // Looks up the plan's local receivers into scratch_receivers_, counting those gone as skipped.
  void find_local_receivers(const FanoutPlan& plan);
  // Whether a relay of `length` bytes still in its receive buffer goes to each of scratch_receivers_
  // on its own (deliver_small) rather than through one shared block.
  bool delivers_one_by_one(std::uint32_t length) const;
  // Lends the frame to each receiver that takes it into a send batch this iteration (the receive
  // buffer is free again by the next read) and queues a copy for each of the others. False when memory
  // ran out.
  bool deliver_small(const BlockRef& buffer, std::uint32_t offset, std::uint32_t length);
  void deliver(RegistryEntry& receiver, const BlockRef& block, std::uint32_t offset, std::uint32_t length);
  // Queues one DELIVER slice to `receiver` if it lives here. A miss counts as a skipped receiver
  // unless the id was sent to every shard (then the origin's MaybeTally counts it once). Returns
  // whether it was queued.
  bool deliver_to(protocol::UserId receiver, const BlockRef& block, std::uint32_t offset,
                  std::uint32_t length, bool count_miss);
  ListGather* new_gather(RelayPeer& peer);
  void hold_list_place(RelayPeer& peer, ListGather& gather);
  void start_gather(RelayPeer& peer, ListGather* gather);
  void finish_list(ListGather* gather);
  void send_list_reply(RelayPeer& peer, ListGather& gather);
  void post(unsigned target, ShardMessage* message);
  void on_relay_message(RelayMessage* message);
  void on_relay_done(RelayMessage* message);
  void on_list_query(ListMessage* message);
  void on_list_part(ListMessage* message);
  static void on_proxy_released(SharedBlock* proxy);

  RelayServiceConfig config_;
  IdDirectory* directory_;
  RelaySeam& seam_;
  MemoryAccount& memory_;
  ShardCounters& counters_;
  Registry peers_;  // relay connections on this shard, by id
  FanoutPlanner planner_;
  std::size_t awaiting_replies_ = 0;
  std::vector<protocol::UserId> scratch_ids_;
  std::vector<RegistryEntry*> scratch_receivers_;  // a relay's receivers on this shard, found once
  std::vector<std::uint8_t> scratch_bytes_;
};

}  // namespace ringhub
