// Shard: what each client frame does. RELAY rewrites its own header into a DELIVER prefix in place
// and queues one slice of one shared block to every receiver: the frame's own block, or a single copy
// out of the receive buffer. Receivers on other shards get the same bytes through a RelayMessage.
// LIST on several shards is gathered from all.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "core/frame_codec.hpp"
#include "transport/op_tag.hpp"
#include "transport/shard.hpp"
#include "transport/tsan_annotations.hpp"

namespace ringhub {

using protocol::FrameType;
using protocol::kHeaderSize;
using protocol::kIdSize;

void Shard::on_frame_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) {
  const FeedResult fed = conn.assembler.feed(
      buffer, 0, length, [&](FrameView&& frame) { return on_frame(conn, std::move(frame)); });
  if (fed.status == FeedResult::Status::kProtocolError) {
    close_with_error(conn, fed.error);
  } else if (fed.status == FeedResult::Status::kNoMemory) {
    spdlog::error("shard {}: out of memory assembling a frame from user {}; closing it", index_, conn.id);
    begin_close(conn);
  }
}

bool Shard::on_frame(Connection& conn, FrameView&& frame) {
  counters_.frames_in.add(1);
  ++conn.frames_in;
  conn.heavy = frame.size() > kLightFrameBytes;
  switch (frame.header.type) {
    case FrameType::kIdentity: reply_identity(conn); break;
    case FrameType::kList: reply_list(conn); break;
    case FrameType::kRelay: relay(conn, frame); break;
    default: break;  // validate_client_header let nothing else through
  }
  return conn.state == ConnState::kOpen;  // a reply may have made the sender a slow consumer
}

void Shard::reply_identity(Connection& conn) {
  scratch_bytes_.clear();
  codec::append_identity_reply(scratch_bytes_, conn.id);
  enqueue_copy(conn, scratch_bytes_);
}

void Shard::reply_list(Connection& conn) {
  if (shared_.shard_count == 1) {
    scratch_ids_.clear();
    registry_.append_ids(scratch_ids_, conn.id);
    scratch_bytes_.clear();
    codec::append_list_reply(scratch_bytes_, scratch_ids_);
    enqueue_copy(conn, scratch_bytes_);
    return;
  }
  // Several shards: hold the reply's place in the queue (replies keep request order) and ask each.
  if (conn.list_asking == nullptr) {
    conn.list_asking = new_gather(conn);
    hold_list_place(conn, *conn.list_asking);
    start_gather(conn, conn.list_asking);
    return;
  }
  // A LIST behind a gather already under way joins the one gathered next (see ListGather).
  if (conn.list_waiting == nullptr) {
    conn.list_waiting = new_gather(conn);
  }
  hold_list_place(conn, *conn.list_waiting);
}

ListGather* Shard::new_gather(Connection& conn) {
  auto* gather = new ListGather;
  gather->requester = &conn;
  ++conn.pending_ops;  // the requester stays alive until the gather finishes
  recharge(gather->charged_bytes, gather_footprint(*gather));
  return gather;
}

void Shard::hold_list_place(Connection& conn, ListGather& gather) {
  const std::uint32_t token = conn.next_token++;
  gather.slots.push_back({conn.outbound.push_placeholder(token), token});
  recharge(gather.charged_bytes, gather_footprint(gather));
  cut_if_slow_consumer(conn);  // placeholders count: a LIST flood that is never read is cut
}

void Shard::start_gather(Connection& conn, ListGather* gather) {
  gather->remaining = shared_.shard_count - 1;
  registry_.append_ids(gather->ids, conn.id);
  recharge(gather->charged_bytes, gather_footprint(*gather));
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    if (s != index_) {
      post(s, new ListMessage(index_, gather));
      ++awaiting_replies_;
    }
  }
}

void Shard::relay(Connection& conn, FrameView& frame) {
  const std::uint8_t count = frame.header.count;
  const std::uint32_t body_size = frame.header.length - static_cast<std::uint32_t>(kIdSize * count);
  std::uint8_t* bytes = frame.bytes();
  scratch_ids_.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    scratch_ids_[i] = codec::load_u64(bytes + kHeaderSize + kIdSize * i);
  }
  const FanoutPlan& plan = planner_.plan(conn.id, scratch_ids_);
  counters_.relays.add(1);
  counters_.skipped_receivers.add(plan.skipped);

  // The receiver list is read: its last 16 bytes become the DELIVER prefix, in place.
  std::uint32_t offset =
      frame.offset + static_cast<std::uint32_t>(kIdSize * count) - static_cast<std::uint32_t>(kIdSize);
  const std::uint32_t length = static_cast<std::uint32_t>(protocol::kDeliverPrefixSize) + body_size;
  codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(
                                   frame.block.data() + offset, protocol::kDeliverPrefixSize),
                               conn.id, body_size);
  const bool anyone =
      !plan.local.empty() || !plan.everywhere.empty() ||
      std::any_of(plan.remote.begin(), plan.remote.end(), [](const auto& ids) { return !ids.empty(); });
  if (!anyone) {
    return;  // nobody to deliver to: no copy
  }
  const BlockRef block = deliver_block(frame, offset, length);
  if (!block) {
    spdlog::error("shard {}: out of memory holding a relay from user {}; closing it", index_, conn.id);
    begin_close(conn);
    return;
  }
  for (const protocol::UserId id : plan.local) {
    deliver_to(id, block, offset, length, true);
  }
  MaybeTally* tally = nullptr;
  if (!plan.everywhere.empty()) {
    tally = new MaybeTally(shared_.shard_count - 1, plan.everywhere.size());
    memory_.charge(tally_footprint(*tally));
    for (std::size_t i = 0; i < plan.everywhere.size(); ++i) {
      tally->found[i] = deliver_to(plan.everywhere[i], block, offset, length, false) ? 1 : 0;
    }
  }
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    if (s == index_ || (plan.remote[s].empty() && tally == nullptr)) {
      continue;
    }
    auto* message = new RelayMessage(index_, block, offset, length);
    message->receivers = plan.remote[s];
    message->maybe = plan.everywhere;
    message->tally = tally;
    post(s, message);
    ++awaiting_replies_;
  }
}

void Shard::on_relay_done(RelayMessage* message) {
  --awaiting_replies_;
  if (MaybeTally* tally = message->tally) {
    if (tally->fold(message->maybe_found)) {
      counters_.skipped_receivers.add(tally->nobody_found());
      memory_.release(tally_footprint(*tally));
      delete tally;
    }
  }
  retire(message);  // drops `original` here, on its owner's thread
}

BlockRef Shard::deliver_block(const FrameView& frame, std::uint32_t& offset, std::uint32_t length) {
  if (frame.own_block) {
    return frame.block;  // assembled or received straight into its block: already the frame's own
  }
  BlockRef copy = copy_block(frame.block.data() + offset, length);
  if (copy) {
    copied_out_bytes_ += length;
    offset = 0;
  }
  return copy;
}

bool Shard::deliver_to(protocol::UserId receiver, const BlockRef& block, std::uint32_t offset,
                       std::uint32_t length, bool count_miss) {
  RegistryEntry* entry = registry_.find(receiver);
  if (entry == nullptr) {
    if (count_miss) {
      counters_.skipped_receivers.add(1);  // departed since the directory said it lived here
    }
    return false;
  }
  auto& conn = static_cast<Connection&>(*entry);
  counters_.deliveries.add(1);
  enqueue(conn, block, offset, length);
  return true;
}

void Shard::on_inbox(ShardBatch* batch) {
  RINGHUB_TSAN_ACQUIRE(batch);  // pairs with send_batch's release: the MSG_RING edge TSan cannot see
  for (ShardMessage* message : batch->messages) {
    handle_message(message);
  }
  delete batch;
}

void Shard::handle_message(ShardMessage* message) {
  shared_.messages_in_flight.fetch_sub(1, std::memory_order_acq_rel);
  switch (message->kind) {
    case ShardMessage::Kind::kRelay: on_relay_message(static_cast<RelayMessage*>(message)); return;
    case ShardMessage::Kind::kRelayDone: on_relay_done(static_cast<RelayMessage*>(message)); return;
    case ShardMessage::Kind::kListQuery: on_list_query(static_cast<ListMessage*>(message)); return;
    case ShardMessage::Kind::kListPart: on_list_part(static_cast<ListMessage*>(message)); return;
    default:
      line_.on_message(*static_cast<LineMessage*>(message));
      retire(static_cast<LineMessage*>(message));
      return;
  }
}

void Shard::on_relay_message(RelayMessage* message) {
  // A proxy block over the origin's bytes; its last release sends the message home.
  new (&message->proxy) SharedBlock(message->original.data(), message->original->capacity(),
                                    &Shard::on_proxy_released, message);
  message->target_shard = this;
  const BlockRef proxy(&message->proxy);  // held while delivering, so the count cannot hit 0 early
  for (const protocol::UserId id : message->receivers) {
    deliver_to(id, proxy, message->offset, message->length, true);
  }
  message->maybe_found.resize(message->maybe.size());
  for (std::size_t i = 0; i < message->maybe.size(); ++i) {
    message->maybe_found[i] =
        deliver_to(message->maybe[i], proxy, message->offset, message->length, false) ? 1 : 0;
  }
}

void Shard::on_proxy_released(SharedBlock* proxy) {
  auto* message = static_cast<RelayMessage*>(proxy->owner());
  auto* shard = static_cast<Shard*>(message->target_shard);
  message->kind = ShardMessage::Kind::kRelayDone;
  shard->post(message->origin_shard, message);
}

void Shard::on_list_query(ListMessage* message) {
  registry_.append_ids(message->ids, 0);
  message->kind = ShardMessage::Kind::kListPart;
  post(message->origin_shard, message);
}

void Shard::on_list_part(ListMessage* message) {
  --awaiting_replies_;
  ListGather* gather = message->gather;
  gather->ids.insert(gather->ids.end(), message->ids.begin(), message->ids.end());
  recharge(gather->charged_bytes, gather_footprint(*gather));
  retire(message);
  if (--gather->remaining == 0) {
    finish_list(gather);
  }
}

void Shard::finish_list(ListGather* gather) {
  Connection& conn = *gather->requester;
  --conn.pending_ops;
  conn.list_asking = std::exchange(conn.list_waiting, nullptr);
  if (conn.state != ConnState::kClosing) {
    std::sort(gather->ids.begin(), gather->ids.end());
    scratch_bytes_.clear();
    codec::append_list_reply(scratch_bytes_, gather->ids);
    const auto size = static_cast<std::uint32_t>(scratch_bytes_.size());
    if (BlockRef block = copy_block(scratch_bytes_.data(), size)) {
      copied_reply_bytes_ += size;
      for (const ListGather::Slot& slot : gather->slots) {
        if (conn.outbound.fill_placeholder(slot.position, slot.token, block, 0, size)) {
          queued_bytes_ += size;
          counters_.frames_out.add(1);
        }
      }
      if (!cut_if_slow_consumer(conn)) {
        mark_dirty(conn);
      }
    }
  }
  retire(gather);
  if (conn.list_asking != nullptr) {
    if (conn.state == ConnState::kClosing) {  // nobody to answer: the waiting gather is never asked
      retire(std::exchange(conn.list_asking, nullptr));
      --conn.pending_ops;
    } else {
      start_gather(conn, conn.list_asking);
    }
  }
  maybe_finish_close(conn);
  if (conn.state == ConnState::kDraining) {
    continue_drain(conn);
  }
}

}  // namespace ringhub
