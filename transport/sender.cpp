// Sender: the write side of a shard (see sender.hpp). One sendmsg in flight per connection; what
// queues behind it leaves in the next sendmsg, small slices copied into the send's batch blocks.
#include "transport/sender.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "transport/op_tag.hpp"

namespace ringhub {

void Sender::enqueue(Connection& conn, BlockRef block, std::uint32_t offset, std::uint32_t length) {
  if (conn.state == ConnState::kClosing) {
    return;
  }
  const bool lent = block->owner() == receive_buffers_;
  conn.outbound.push(std::move(block), offset, length);
  if (lent) {
    conn.lent_end = conn.outbound.end_position();
  }
  queued_bytes_ += length;
  counters_.frames_out.add(1);
  after_queueing(conn);
}

bool Sender::enqueue_copy(Connection& conn, std::span<const std::uint8_t> bytes, CopyReason reason) {
  if (conn.state == ConnState::kClosing) {
    return true;
  }
  if (!conn.outbound.push_copy(bytes)) {
    return false;
  }
  count_copy(bytes.size(), reason);
  queued_bytes_ += bytes.size();
  counters_.frames_out.add(1);
  after_queueing(conn);
  return true;
}

BlockRef Sender::copy(std::span<const std::uint8_t> bytes, CopyReason reason) {
  BlockRef block = HeapBlock::create(static_cast<std::uint32_t>(bytes.size()), &memory_);
  if (!block) {
    return block;
  }
  std::memcpy(block.data(), bytes.data(), bytes.size());
  count_copy(bytes.size(), reason);
  return block;
}

void Sender::count_copy(std::size_t bytes, CopyReason reason) {
  switch (reason) {
    case CopyReason::kCopyOut: copied_out_bytes_ += bytes; return;
    case CopyReason::kReply: copied_reply_bytes_ += bytes; return;
    case CopyReason::kBatch: counters_.batched_bytes.add(bytes); return;
  }
}

void Sender::filled_in_place(std::uint32_t length) {
  queued_bytes_ += length;
  counters_.frames_out.add(1);
}

bool Sender::batches_this_iteration(const Connection& conn, std::uint32_t length) const {
  // Nothing in flight and all it has queued fits the batches of one send: the flush copies every small
  // slice of it. (A placeholder, or large slices taking the iovecs, can still stop the copy short;
  // own_lent_slices covers that.)
  return length <= config_.batch_threshold && conn.state == ConnState::kOpen && !conn.send_in_flight &&
         conn.outbound.queued_bytes() + length <= kLendableQueueBytes;
}

void Sender::flush() {
  while (!dirty_.empty()) {
    Connection& conn = dirty_.front();
    dirty_.pop_front();
    const std::uint64_t sent_through = start_send(conn);
    if (conn.lent_end > sent_through) {
      own_lent_slices(conn);  // rare: a placeholder or a full batch kept a lent slice out of the send
    }
    conn.lent_end = 0;
  }
}

void Sender::own_lent_slices(Connection& conn) {
  const std::int64_t copied = conn.outbound.copy_out_blocks_of(receive_buffers_, &memory_);
  if (copied < 0) {
    spdlog::error("shard {}: out of memory copying out a relay for user {}; closing it", shard_index_,
                  conn.id);
    events_.on_unwritable(conn);  // its queue goes, and the receive buffers with it
    return;
  }
  copied_out_bytes_ += static_cast<std::uint64_t>(copied);
}

std::uint64_t Sender::start_send(Connection& conn) {
  if (conn.send_in_flight || conn.outbound.empty() || conn.state == ConnState::kClosing) {
    return 0;
  }
  SendContext* context = contexts_.acquire();
  const std::size_t batchable = config_.batch_threshold > 0 ? conn.outbound.queued_bytes() : 0;
  SendContextPool::Batches batches(contexts_, *context, batchable, conn.lent_end);
  const std::size_t max_bytes =
      conn.state == ConnState::kDraining ? kMaxBytesPerDrainingSend : kMaxBytesPerSend;
  const SendPlan plan =
      conn.outbound.fill_batched(context->iov, kMaxIovPerSend, max_bytes, batches, config_.batch_threshold);
  const std::size_t count = plan.iov_count;
  if (count == 0) {  // a gathered reply holds the head: wait for it
    contexts_.release(context);
    return 0;
  }
  counters_.batched_bytes.add(plan.batched_bytes);
  context->bytes = plan.bytes;
  context->msg = {};
  context->msg.msg_iov = context->iov;
  context->msg.msg_iovlen = count;
  io_uring_sqe* entry = ring_.next_sqe();
  if (config_.send_zc) {
    io_uring_prep_sendmsg_zc(entry, static_cast<int>(conn.slot), &context->msg, MSG_NOSIGNAL);
  } else {
    io_uring_prep_sendmsg(entry, static_cast<int>(conn.slot), &context->msg, MSG_NOSIGNAL);
  }
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kSend));
  conn.send = context;
  conn.send_in_flight = true;
  conn.send_started = now_;
  conn.inflight_bytes = context->bytes;
  ++conn.pending_ops;
  return plan.end_position;
}

void Sender::on_completion(Connection& conn, const io_uring_cqe& cqe) {
  if ((cqe.flags & IORING_CQE_F_NOTIF) != 0) {
    on_notification(conn);
    return;
  }
  SendContext* context = std::exchange(conn.send, nullptr);
  conn.send_in_flight = false;
  conn.inflight_bytes = 0;
  const bool notification_due = (cqe.flags & IORING_CQE_F_MORE) != 0;  // send_zc only
  if (!notification_due) {
    --conn.pending_ops;
  }
  if (cqe.res > 0) {
    const auto sent = static_cast<std::size_t>(cqe.res);
    counters_.bytes_out.add(sent);
    conn.bytes_written += sent;
    queued_bytes_ -= sent;
    conn.outbound.consume(sent, notification_due ? &context->zc_hold : nullptr);
    if (conn.outbound.holds_spare_ring() && !conn.spare_ring_hook.is_linked()) {
      spare_rings_.push_back(conn);
    }
  }
  if (notification_due) {  // the kernel may still read these blocks: hold them until the notification
    context->next = nullptr;
    SendContext** tail = &conn.zc_waiting;
    while (*tail != nullptr) {
      tail = &(*tail)->next;
    }
    *tail = context;
  } else {
    contexts_.release(context);
  }
  if (cqe.res < 0 && cqe.res != -EAGAIN && cqe.res != -EINTR) {
    spdlog::debug("shard {}: user {}: send failed: {}", shard_index_, conn.id, std::strerror(-cqe.res));
    events_.on_unwritable(conn);  // EPIPE, ECONNRESET: the connection is gone
  } else if (conn.state != ConnState::kClosing) {
    mark_dirty(conn);  // the rest leaves with whatever else queues up this iteration
  }
  events_.on_send_done(conn);
}

void Sender::on_tick() {
  contexts_.on_tick();
  // Only the queues a send emptied since the last tick: walking every connection would touch each
  // idle one's memory four times a second.
  while (!spare_rings_.empty()) {
    Connection& conn = spare_rings_.front();
    spare_rings_.pop_front();
    conn.outbound.release_spare_ring();  // no-op if it has filled again: a later send re-lists it
  }
}

void Sender::on_notification(Connection& conn) {
  SendContext* context = conn.zc_waiting;
  if (context != nullptr) {
    conn.zc_waiting = context->next;
    context->zc_hold.clear();
    contexts_.release(context);
  }
  --conn.pending_ops;
  events_.on_notified(conn);
}

}  // namespace ringhub
