// RelayService: the relay protocol on one shard, over RelaySeam. See core/relay_service.hpp; the
// message flow is in docs/design.md ("Fan-out across shards", "LIST").
#include "core/relay_service.hpp"

#include <algorithm>
#include <new>
#include <utility>

#include "core/frame_codec.hpp"
#include "core/maybe_tally.hpp"

namespace ringhub {

using protocol::FrameType;
using protocol::kHeaderSize;
using protocol::kIdSize;

namespace {

// A small frame goes to at most this many receivers one by one (lent, or copied for each): asking each
// costs a seam call, and a receiver that cannot take it at once a copy of its own, against the one
// shared copy saved. At K=8 and K=16 with 64 B bodies, lending cost more than it saved
// (docs/perf/engine-before-after.md).
constexpr std::size_t kMaxOneByOneReceivers = 4;

std::size_t gather_footprint(const ListGather& gather) {
  return malloc_footprint(sizeof(ListGather)) + vector_footprint(gather.slots) + vector_footprint(gather.ids);
}

std::size_t tally_footprint(const MaybeTally& tally) {
  return malloc_footprint(sizeof(MaybeTally)) + vector_footprint(tally.found);
}

}  // namespace

RelayService::RelayService(const RelayServiceConfig& config, IdDirectory* directory, RelaySeam& seam,
                           MemoryAccount& memory, ShardCounters& counters)
    : config_(config),
      directory_(directory),
      seam_(seam),
      memory_(memory),
      counters_(counters),
      planner_(config.shard_count, config.shard_index, directory) {
  // Every RELAY parses its receivers here: no growth on the hot path.
  scratch_ids_.reserve(protocol::kMaxReceivers);
  scratch_receivers_.reserve(protocol::kMaxReceivers);
}

void RelayService::add(RelayPeer& peer) {
  peers_.insert(peer);
  if (config_.shard_count > 1) {
    directory_->publish(peer.id, config_.shard_index);
  }
}

void RelayService::remove(RelayPeer& peer) {
  peers_.erase(peer);
  if (config_.shard_count > 1) {
    directory_->retract(peer.id);
  }
}

void RelayService::on_frame(RelayPeer& peer, FrameView& frame) {
  switch (frame.header.type) {
    case FrameType::kIdentity: reply_identity(peer); break;
    case FrameType::kList: reply_list(peer); break;
    case FrameType::kRelay: relay(peer, frame); break;
    default: break;  // the header was validated: nothing else gets here
  }
}

void RelayService::on_message(ShardMessage* message) {
  switch (message->kind) {
    case ShardMessage::Kind::kRelay: on_relay_message(static_cast<RelayMessage*>(message)); return;
    case ShardMessage::Kind::kRelayDone: on_relay_done(static_cast<RelayMessage*>(message)); return;
    case ShardMessage::Kind::kListQuery: on_list_query(static_cast<ListMessage*>(message)); return;
    case ShardMessage::Kind::kListPart: on_list_part(static_cast<ListMessage*>(message)); return;
    default: retire(memory_, message); return;  // the shard routes only the kinds above here
  }
}

void RelayService::send_copy(RelayPeer& peer, std::span<const std::uint8_t> bytes) {
  if (!seam_.send_copy(peer, bytes, CopyReason::kReply)) {
    seam_.out_of_memory(peer, "a reply");
  }
}

void RelayService::reply_identity(RelayPeer& peer) {
  scratch_bytes_.clear();
  codec::append_identity_reply(scratch_bytes_, peer.id);
  send_copy(peer, scratch_bytes_);
}

void RelayService::reply_list(RelayPeer& peer) {
  if (config_.shard_count == 1) {
    scratch_ids_.clear();
    peers_.append_ids(scratch_ids_, peer.id);
    scratch_bytes_.clear();
    codec::append_list_reply(scratch_bytes_, scratch_ids_);
    send_copy(peer, scratch_bytes_);
    return;
  }
  // Several shards: hold the reply's place in the queue (replies keep request order) and ask each.
  if (peer.list_asking == nullptr) {
    peer.list_asking = new_gather(peer);
    hold_list_place(peer, *peer.list_asking);
    start_gather(peer, peer.list_asking);
    return;
  }
  // A LIST behind a gather already under way joins the one gathered next (see ListGather).
  if (peer.list_waiting == nullptr) {
    peer.list_waiting = new_gather(peer);
  }
  hold_list_place(peer, *peer.list_waiting);
}

ListGather* RelayService::new_gather(RelayPeer& peer) {
  auto* gather = new ListGather;
  gather->requester = &peer;
  seam_.hold(peer);
  memory_.recharge(gather->charged_bytes, gather_footprint(*gather));
  return gather;
}

void RelayService::hold_list_place(RelayPeer& peer, ListGather& gather) {
  gather.slots.push_back(seam_.hold_reply(peer));
  memory_.recharge(gather.charged_bytes, gather_footprint(gather));
}

void RelayService::start_gather(RelayPeer& peer, ListGather* gather) {
  gather->remaining = config_.shard_count - 1;
  peers_.append_ids(gather->ids, peer.id);
  memory_.recharge(gather->charged_bytes, gather_footprint(*gather));
  for (unsigned s = 0; s < config_.shard_count; ++s) {
    if (s != config_.shard_index) {
      post(s, new ListMessage(config_.shard_index, gather));
    }
  }
}

void RelayService::post(unsigned target, ShardMessage* message) {
  ++awaiting_replies_;  // every relay and LIST message comes back to its origin
  seam_.post(target, message);
}

void RelayService::relay(RelayPeer& peer, FrameView& frame) {
  const std::uint8_t count = frame.header.count;
  const std::uint32_t body_size = frame.header.length - static_cast<std::uint32_t>(kIdSize * count);
  const std::uint8_t* bytes = frame.bytes();
  scratch_ids_.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    scratch_ids_[i] = codec::load_u64(bytes + kHeaderSize + kIdSize * i);
  }
  const FanoutPlan& plan = planner_.plan(peer.id, scratch_ids_);
  counters_.relays.add(1);
  counters_.skipped_receivers.add(plan.skipped);

  // The receiver list is read: its last 16 bytes become the DELIVER prefix, in place.
  std::uint32_t offset =
      frame.offset + static_cast<std::uint32_t>(kIdSize * count) - static_cast<std::uint32_t>(kIdSize);
  const std::uint32_t length = static_cast<std::uint32_t>(protocol::kDeliverPrefixSize) + body_size;
  codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(
                                   frame.block.data() + offset, protocol::kDeliverPrefixSize),
                               peer.id, body_size);
  const bool only_local =
      plan.everywhere.empty() &&
      std::none_of(plan.remote.begin(), plan.remote.end(), [](const auto& ids) { return !ids.empty(); });
  if (only_local && plan.local.empty()) {
    return;  // nobody to deliver to: no copy
  }
  find_local_receivers(plan);
  if (!frame.own_block && only_local && delivers_one_by_one(length)) {
    if (!deliver_small(frame.block, offset, length)) {
      seam_.out_of_memory(peer, "a relay");
    }
    return;
  }
  const BlockRef block = deliver_block(frame, offset, length);
  if (!block) {
    seam_.out_of_memory(peer, "a relay");
    return;
  }
  for (RegistryEntry* entry : scratch_receivers_) {
    deliver(*entry, block, offset, length);
  }
  MaybeTally* tally = nullptr;
  if (!plan.everywhere.empty()) {
    tally = new MaybeTally(config_.shard_count - 1, plan.everywhere.size());
    memory_.charge(tally_footprint(*tally));
    for (std::size_t i = 0; i < plan.everywhere.size(); ++i) {
      tally->found[i] = deliver_to(plan.everywhere[i], block, offset, length, false) ? 1 : 0;
    }
  }
  for (unsigned s = 0; s < config_.shard_count; ++s) {
    if (s == config_.shard_index || (plan.remote[s].empty() && tally == nullptr)) {
      continue;
    }
    auto* message = new RelayMessage(config_.shard_index, block, offset, length);
    message->receivers = plan.remote[s];
    message->maybe = plan.everywhere;
    message->tally = tally;
    post(s, message);
  }
}

BlockRef RelayService::deliver_block(const FrameView& frame, std::uint32_t& offset, std::uint32_t length) {
  if (frame.own_block) {
    return frame.block;  // assembled or received straight into its block: already the frame's own
  }
  BlockRef copy =
      seam_.copy(std::span<const std::uint8_t>(frame.block.data() + offset, length), CopyReason::kCopyOut);
  if (copy) {
    offset = 0;
  }
  return copy;
}

void RelayService::find_local_receivers(const FanoutPlan& plan) {
  scratch_receivers_.clear();
  for (const protocol::UserId id : plan.local) {
    if (RegistryEntry* entry = peers_.find(id)) {
      scratch_receivers_.push_back(entry);
    } else {
      counters_.skipped_receivers.add(1);  // departed since the directory said it lived here
    }
  }
}

bool RelayService::delivers_one_by_one(std::uint32_t length) const {
  return length <= config_.small_frame_bytes && scratch_receivers_.size() <= kMaxOneByOneReceivers;
}

bool RelayService::deliver_small(const BlockRef& buffer, std::uint32_t offset, std::uint32_t length) {
  const std::span<const std::uint8_t> bytes(buffer.data() + offset, length);
  bool all_lent = true;
  for (RegistryEntry* entry : scratch_receivers_) {
    auto& receiver = static_cast<RelayPeer&>(*entry);
    if (seam_.sends_at_once(receiver, length)) {
      deliver(*entry, buffer, offset, length);  // copied into its send batch before the buffer is reused
      continue;
    }
    all_lent = false;
    if (!seam_.send_copy(receiver, bytes, CopyReason::kBatch)) {
      return false;
    }
    counters_.deliveries.add(1);
  }
  if (all_lent) {
    counters_.lent_frames.add(1);
  }
  return true;
}

bool RelayService::deliver_to(protocol::UserId receiver, const BlockRef& block, std::uint32_t offset,
                              std::uint32_t length, bool count_miss) {
  RegistryEntry* entry = peers_.find(receiver);
  if (entry == nullptr) {
    if (count_miss) {
      counters_.skipped_receivers.add(1);  // departed since the directory said it lived here
    }
    return false;
  }
  deliver(*entry, block, offset, length);
  return true;
}

void RelayService::deliver(RegistryEntry& receiver, const BlockRef& block, std::uint32_t offset,
                           std::uint32_t length) {
  counters_.deliveries.add(1);
  seam_.send(static_cast<RelayPeer&>(receiver), block, offset, length);
}

void RelayService::on_relay_message(RelayMessage* message) {
  // A proxy block over the origin's bytes; its last release sends the message home.
  new (&message->proxy) SharedBlock(message->original.data(), message->original->capacity(),
                                    &RelayService::on_proxy_released, message);
  message->target = this;
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

void RelayService::on_proxy_released(SharedBlock* proxy) {
  auto* message = static_cast<RelayMessage*>(proxy->owner());
  message->kind = ShardMessage::Kind::kRelayDone;
  message->target->seam_.post(message->origin_shard, message);  // not counted: it is the reply
}

void RelayService::on_relay_done(RelayMessage* message) {
  --awaiting_replies_;
  if (MaybeTally* tally = message->tally) {
    if (tally->fold(message->maybe_found)) {
      counters_.skipped_receivers.add(tally->nobody_found());
      memory_.release(tally_footprint(*tally));
      delete tally;
    }
  }
  retire(memory_, message);  // drops `original` here, on its owner's thread
}

void RelayService::on_list_query(ListMessage* message) {
  peers_.append_ids(message->ids, 0);
  message->kind = ShardMessage::Kind::kListPart;
  seam_.post(message->origin_shard, message);  // not counted: it is the reply
}

void RelayService::on_list_part(ListMessage* message) {
  --awaiting_replies_;
  ListGather* gather = message->gather;
  gather->ids.insert(gather->ids.end(), message->ids.begin(), message->ids.end());
  memory_.recharge(gather->charged_bytes, gather_footprint(*gather));
  retire(memory_, message);
  if (--gather->remaining == 0) {
    finish_list(gather);
  }
}

void RelayService::finish_list(ListGather* gather) {
  RelayPeer& peer = *gather->requester;
  peer.list_asking = std::exchange(peer.list_waiting, nullptr);
  if (!seam_.closing(peer)) {
    send_list_reply(peer, *gather);
  }
  retire(memory_, gather);
  if (peer.list_asking != nullptr) {
    if (seam_.closing(peer)) {  // nobody to answer: the waiting gather is never asked
      retire(memory_, std::exchange(peer.list_asking, nullptr));
      seam_.release(peer);
    } else {
      start_gather(peer, peer.list_asking);
    }
  }
  seam_.release(peer);  // the finished gather's hold, last: it may end the peer's close
}

void RelayService::send_list_reply(RelayPeer& peer, ListGather& gather) {
  std::sort(gather.ids.begin(), gather.ids.end());
  scratch_bytes_.clear();
  codec::append_list_reply(scratch_bytes_, gather.ids);
  const BlockRef block = seam_.copy(scratch_bytes_, CopyReason::kReply);
  if (!block) {
    seam_.out_of_memory(peer, "a LIST reply");  // its held places would block its queue for good
    return;
  }
  seam_.fill_replies(peer, gather.slots, block, static_cast<std::uint32_t>(scratch_bytes_.size()));
}

}  // namespace ringhub
