// ShardMailbox: one shard's end of the messages between shards. Posting queues a message for its
// target; once per loop iteration each target's queue leaves as one batch in one IORING_OP_MSG_RING,
// one batch per target in flight, so the messages between two shards keep their order. Messages a
// shard posts to itself skip the ring. The messages are pure data (core/shard_message.hpp).
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "core/memory_account.hpp"
#include "core/shard_message.hpp"
#include "transport/cross_shard.hpp"
#include "transport/uring/ring.hpp"

namespace ringhub {

// Who handles what arrives: the shard, which hands each message to the service it belongs to. Takes
// ownership of the message.
class MessageRecipient {
 public:
  virtual void on_message(ShardMessage* message) = 0;

 protected:
  ~MessageRecipient() = default;
};

// Contract: owned and used by one shard's thread, over that shard's ring. `ring_fds` (every shard's
// ring, by index) and `in_flight` (messages posted hub-wide and not yet handled) are shared by all
// shards and outlive the mailbox.
class ShardMailbox {
 public:
  ShardMailbox(unsigned index, std::span<const int> ring_fds, std::atomic<std::int64_t>& in_flight,
               MemoryAccount& memory, uring::Ring& ring, MessageRecipient& recipient);
  ShardMailbox(const ShardMailbox&) = delete;
  ShardMailbox& operator=(const ShardMailbox&) = delete;

  // Queues `message` for shard `target` (this one included) and charges what it holds now to this
  // shard's account (a message that grew on another shard is brought up to date).
  void post(unsigned target, ShardMessage* message);
  // Hands the messages this shard posted to itself to the recipient, in order, those posted while
  // handling included: before the iteration's submit, so they never wait for a completion.
  void drain_self();
  // Sends each target's queue as one batch, for every target with no batch in flight.
  void flush();
  // A batch arrived (Op::kInbox): every message goes to the recipient, in order.
  void on_batch(ShardBatch* batch);
  // Our MSG_RING to `target` completed (Op::kOutbox): the batch is the target's now, or, on an error,
  // still ours and sent again.
  void on_sent(unsigned target, const io_uring_cqe& cqe);
  // Whether nothing waits to leave: every queue empty (a batch may still be in flight).
  bool nothing_queued() const;

 private:
  struct Outbox {
    std::vector<ShardMessage*> pending;
    ShardBatch* in_flight = nullptr;
  };

  void send_batch(unsigned target);
  void hand_over(ShardMessage* message);

  const unsigned index_;
  std::span<const int> ring_fds_;
  std::atomic<std::int64_t>& in_flight_;
  MemoryAccount& memory_;
  uring::Ring& ring_;
  MessageRecipient& recipient_;
  std::vector<Outbox> outboxes_;
  std::vector<ShardMessage*> self_inbox_;
};

}  // namespace ringhub
