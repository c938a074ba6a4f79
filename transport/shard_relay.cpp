// Shard: the relay protocol's side of the ring. Frames come out of the assembler here and go to the
// relay service (core/relay_service), whose seam queues slices, holds reply places and posts to
// other shards.
#include <spdlog/spdlog.h>

#include "transport/shard.hpp"

namespace ringhub {

void Shard::on_frame_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) {
  const FeedResult fed = conn.assembler.feed(
      buffer, 0, length, [&](FrameView&& frame) { return on_frame(conn, std::move(frame)); });
  if (fed.status == FeedResult::Status::kProtocolError) {
    lifecycle_.close_with_error(conn, fed.error);
  } else if (fed.status == FeedResult::Status::kNoMemory) {
    spdlog::error("shard {}: out of memory assembling a frame from user {}; closing it", index_, conn.id);
    lifecycle_.begin_close(conn);
  }
}

bool Shard::on_frame(Connection& conn, FrameView&& frame) {
  counters_.frames_in.add(1);
  ++conn.frames_in;
  classify_by_frame(conn, frame.size());
  relay_.on_frame(conn, frame);
  return conn.state == ConnState::kOpen;  // a reply may have made the sender a slow consumer
}

void Shard::RelaySeamOnShard::send(RelayPeer& peer, const BlockRef& block, std::uint32_t offset,
                                   std::uint32_t length) {
  shard_.sender_.enqueue(static_cast<Connection&>(peer), block, offset, length);
}

BlockRef Shard::RelaySeamOnShard::copy(std::span<const std::uint8_t> bytes, CopyReason reason) {
  return shard_.sender_.copy(bytes, reason);
}

bool Shard::RelaySeamOnShard::send_copy(RelayPeer& peer, std::span<const std::uint8_t> bytes,
                                        CopyReason reason) {
  return shard_.sender_.enqueue_copy(static_cast<Connection&>(peer), bytes, reason);
}

ReplySlot Shard::RelaySeamOnShard::hold_reply(RelayPeer& peer) {
  auto& conn = static_cast<Connection&>(peer);
  const std::uint32_t token = conn.next_token++;
  const ReplySlot slot{conn.outbound.push_placeholder(token), token};
  shard_.sender_.cut_if_slow_consumer(conn);  // places count: a LIST flood that is never read is cut
  return slot;
}

void Shard::RelaySeamOnShard::fill_replies(RelayPeer& peer, std::span<const ReplySlot> slots,
                                           const BlockRef& block, std::uint32_t length) {
  auto& conn = static_cast<Connection&>(peer);
  for (const ReplySlot& slot : slots) {
    if (conn.outbound.fill_placeholder(slot.position, slot.token, block, 0, length)) {
      shard_.sender_.filled_in_place(length);
    }
  }
  shard_.sender_.after_queueing(conn);
}

bool Shard::RelaySeamOnShard::closing(const RelayPeer& peer) const {
  return static_cast<const Connection&>(peer).state == ConnState::kClosing;
}

bool Shard::RelaySeamOnShard::sends_at_once(const RelayPeer& peer, std::uint32_t length) const {
  return shard_.sender_.batches_this_iteration(static_cast<const Connection&>(peer), length);
}

void Shard::RelaySeamOnShard::hold(RelayPeer& peer) {
  ++static_cast<Connection&>(peer).pending_ops;
}

void Shard::RelaySeamOnShard::release(RelayPeer& peer) {
  auto& conn = static_cast<Connection&>(peer);
  --conn.pending_ops;
  shard_.lifecycle_.after_op(conn);
}

void Shard::RelaySeamOnShard::out_of_memory(RelayPeer& peer, std::string_view what) {
  spdlog::error("shard {}: out of memory holding {} for user {}; closing it", shard_.index_, what, peer.id);
  shard_.lifecycle_.begin_close(static_cast<Connection&>(peer));
}

void Shard::RelaySeamOnShard::post(unsigned target, ShardMessage* message) {
  shard_.mailbox_.post(target, message);
}

}  // namespace ringhub
