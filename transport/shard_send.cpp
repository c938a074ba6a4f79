// Shard: the write side. One sendmsg in flight per connection (more could reorder bytes); what queues
// behind it leaves in the next sendmsg, its iovecs pointing straight at the shared blocks.
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "transport/op_tag.hpp"
#include "transport/shard.hpp"

namespace ringhub {

void Shard::enqueue(Connection& conn, BlockRef block, std::uint32_t offset, std::uint32_t length) {
  if (conn.state == ConnState::kClosing) {
    return;
  }
  const bool lent = block->owner() == pool_.get();
  conn.outbound.push(std::move(block), offset, length);
  if (lent) {
    conn.lent_end = conn.outbound.end_position();
  }
  queued_bytes_ += length;
  counters_.frames_out.add(1);
  if (!cut_if_slow_consumer(conn)) {
    mark_dirty(conn);
  }
}

bool Shard::cut_if_slow_consumer(Connection& conn) {
  // Counted as memory (slices, block overheads, the ring), the way the budget counts it, so a flood of
  // tiny replies cannot hold several times the limit.
  if (conn.state != ConnState::kOpen || conn.outbound.memory_bytes() <= config_.max_outbound_bytes) {
    return false;
  }
  close_with_error(conn, protocol::ErrorCode::kSlowConsumer);  // NATS's policy: bounded, then closed
  return true;
}

BlockRef Shard::copy_block(const std::uint8_t* bytes, std::uint32_t size) {
  BlockRef block = HeapBlock::create(size, &memory_);
  if (block) {
    std::memcpy(block.data(), bytes, size);
  }
  return block;
}

void Shard::enqueue_copy(Connection& conn, std::span<const std::uint8_t> bytes) {
  const auto size = static_cast<std::uint32_t>(bytes.size());
  BlockRef block = copy_block(bytes.data(), size);
  if (!block) {
    begin_close(conn);  // out of memory: this connection cannot be answered
    return;
  }
  copied_reply_bytes_ += size;
  enqueue(conn, std::move(block), 0, size);
}

void Shard::mark_dirty(Connection& conn) {
  if (!conn.dirty_hook.is_linked() && !conn.send_in_flight) {
    dirty_.push_back(conn);
  }
}

void Shard::flush_sends() {
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

bool Shard::batches_this_iteration(const Connection& conn, std::uint32_t length) const {
  // Nothing in flight and all it has queued fits the batches of one send: the flush copies every small
  // slice of it. (A placeholder, or large slices taking the iovecs, can still stop the copy short;
  // own_lent_slices covers that.)
  return length <= config_.batch_threshold && conn.state == ConnState::kOpen && !conn.send_in_flight &&
         conn.outbound.queued_bytes() + length <= kLendableQueueBytes;
}

void Shard::own_lent_slices(Connection& conn) {
  const std::int64_t copied = conn.outbound.copy_out_blocks_of(pool_.get(), &memory_);
  if (copied < 0) {
    spdlog::error("shard {}: out of memory copying out a relay for user {}; closing it", index_, conn.id);
    begin_close(conn);  // its queue goes, and the receive buffers with it
    return;
  }
  copied_out_bytes_ += static_cast<std::uint64_t>(copied);
}

std::uint64_t Shard::start_send(Connection& conn) {
  if (conn.send_in_flight || conn.outbound.empty() || conn.state == ConnState::kClosing) {
    return 0;
  }
  SendContext* context = send_contexts_.acquire();
  if (config_.batch_threshold > 0) {
    send_contexts_.prepare_batch(*context, conn.outbound.queued_bytes());
  }
  SendContextPool::Batches batches(send_contexts_, *context, conn.lent_end);
  const SendPlan plan = conn.outbound.fill_batched(context->iov, kMaxIovPerSend, kMaxBytesPerSend, batches,
                                                   config_.batch_threshold);
  const std::size_t count = plan.iov_count;
  if (count == 0) {  // a gathered reply holds the head: wait for it
    send_contexts_.release(context);
    return 0;
  }
  counters_.batched_bytes.add(plan.batched_bytes);
  context->bytes = plan.bytes;
  context->msg = {};
  context->msg.msg_iov = context->iov;
  context->msg.msg_iovlen = count;
  io_uring_sqe* entry = sqe();
  if (config_.send_zc) {
    io_uring_prep_sendmsg_zc(entry, static_cast<int>(conn.slot), &context->msg, MSG_NOSIGNAL);
  } else {
    io_uring_prep_sendmsg(entry, static_cast<int>(conn.slot), &context->msg, MSG_NOSIGNAL);
  }
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kSend));
  conn.send = context;
  conn.send_in_flight = true;
  conn.inflight_bytes = context->bytes;
  ++conn.pending_ops;
  return plan.end_position;
}

void Shard::on_send(Connection& conn, const io_uring_cqe& cqe) {
  if ((cqe.flags & IORING_CQE_F_NOTIF) != 0) {
    on_send_notification(conn);
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
    queued_bytes_ -= sent;
    conn.outbound.consume(sent, notification_due ? &context->zc_hold : nullptr);
  }
  if (notification_due) {  // the kernel may still read these blocks: hold them until the notification
    context->next = nullptr;
    SendContext** tail = &conn.zc_waiting;
    while (*tail != nullptr) {
      tail = &(*tail)->next;
    }
    *tail = context;
  } else {
    send_contexts_.release(context);
  }
  if (cqe.res < 0 && cqe.res != -EAGAIN && cqe.res != -EINTR) {
    spdlog::debug("shard {}: user {}: send failed: {}", index_, conn.id, std::strerror(-cqe.res));
    begin_close(conn);  // EPIPE, ECONNRESET: the connection is gone
  } else if (conn.state != ConnState::kClosing) {
    mark_dirty(conn);  // the rest leaves with whatever else queues up this iteration
    if (conn.state == ConnState::kDraining) {
      continue_drain(conn);
    }
  }
  maybe_finish_close(conn);
}

void Shard::on_send_notification(Connection& conn) {
  SendContext* context = conn.zc_waiting;
  if (context != nullptr) {
    conn.zc_waiting = context->next;
    context->zc_hold.clear();
    send_contexts_.release(context);
  }
  --conn.pending_ops;
  maybe_finish_close(conn);
}

}  // namespace ringhub
