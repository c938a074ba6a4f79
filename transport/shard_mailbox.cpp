// ShardMailbox: posting, the per-target batches over IORING_OP_MSG_RING, and what arrives. See
// transport/shard_mailbox.hpp; docs/design.md ("Cross-shard work") says why batches and order.
#include "transport/shard_mailbox.hpp"

#include <spdlog/spdlog.h>

#include <cstring>
#include <utility>

#include "transport/op_tag.hpp"
#include "transport/tsan_annotations.hpp"

namespace ringhub {

ShardMailbox::ShardMailbox(unsigned index, std::span<const int> ring_fds,
                           std::atomic<std::int64_t>& in_flight, MemoryAccount& memory, uring::Ring& ring,
                           MessageRecipient& recipient)
    : index_(index),
      ring_fds_(ring_fds),
      in_flight_(in_flight),
      memory_(memory),
      ring_(ring),
      recipient_(recipient),
      outboxes_(ring_fds.size()) {}

void ShardMailbox::post(unsigned target, ShardMessage* message) {
  memory_.recharge(message->charged_bytes, message_footprint(*message));
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  if (target == index_) {
    self_inbox_.push_back(message);
    return;
  }
  outboxes_[target].pending.push_back(message);
}

void ShardMailbox::drain_self() {
  while (!self_inbox_.empty()) {
    std::vector<ShardMessage*> batch;
    batch.swap(self_inbox_);
    for (ShardMessage* message : batch) {
      hand_over(message);
    }
  }
}

void ShardMailbox::flush() {
  for (unsigned target = 0; target < outboxes_.size(); ++target) {
    Outbox& box = outboxes_[target];
    if (box.in_flight == nullptr && !box.pending.empty()) {
      box.in_flight = new ShardBatch;
      box.in_flight->messages.swap(box.pending);
      send_batch(target);
    }
  }
}

void ShardMailbox::send_batch(unsigned target) {
  // The batch (and every message, block and string it points to) passes to the target's thread
  // through the kernel: io_uring_enter here, the target's CQE there. That is a happens-before edge
  // TSan cannot see, so it is declared: released here, acquired in on_batch.
  RINGHUB_TSAN_RELEASE(outboxes_[target].in_flight);
  io_uring_sqe* entry = ring_.next_sqe();
  io_uring_prep_msg_ring(entry, ring_fds_[target], 0, tag(outboxes_[target].in_flight, Op::kInbox), 0);
  io_uring_sqe_set_data64(entry, tag_number(target, Op::kOutbox));
}

void ShardMailbox::on_sent(unsigned target, const io_uring_cqe& cqe) {
  if (cqe.res < 0) {
    // The target's CQ could not take it (or a transient error): the batch is still ours; resend it.
    spdlog::warn("shard {}: MSG_RING to shard {} failed ({}); retrying", index_, target,
                 std::strerror(-cqe.res));
    send_batch(target);
    return;
  }
  outboxes_[target].in_flight = nullptr;  // now the target's to free
}

void ShardMailbox::on_batch(ShardBatch* batch) {
  RINGHUB_TSAN_ACQUIRE(batch);  // pairs with send_batch's release
  for (ShardMessage* message : batch->messages) {
    hand_over(message);
  }
  delete batch;
}

void ShardMailbox::hand_over(ShardMessage* message) {
  in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  recipient_.on_message(message);
}

bool ShardMailbox::nothing_queued() const {
  for (const Outbox& box : outboxes_) {
    if (!box.pending.empty()) {
      return false;
    }
  }
  return self_inbox_.empty();
}

}  // namespace ringhub
