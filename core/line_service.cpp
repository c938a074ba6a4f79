// LineService: the line protocol on one shard, over LineSeam. See core/line_service.hpp; the message
// flow is in docs/design.md ("The line protocol").
#include "core/line_service.hpp"

#include <algorithm>
#include <string>

#include "core/line_protocol.hpp"

namespace ringhub {

namespace {
// A forward that lands on a shard whose line connections all left meanwhile is sent elsewhere; after
// this many misses in a row the message waits (still pending) until its origin gives up or retries.
constexpr unsigned kMaxForwardTries = 8;

// What `held` has allocated: nothing while its bytes fit in the string itself.
std::size_t allocated(const std::string& held) {
  return held.capacity() > std::string().capacity() ? held.capacity() + 1 : 0;
}
}  // namespace

LineService::LineService(const LineServiceConfig& config, const KeyedHash& x_hash, LineSeam& seam,
                         ShardCounters& counters, std::uint64_t seed)
    : config_(config), x_hash_(x_hash), seam_(seam), counters_(counters), pending_(x_hash), rng_(seed) {}

void LineService::add(LinePeer& peer) {
  peers_.insert(peer);
  peer.line_index = static_cast<std::uint32_t>(pick_.size());
  peer.line_pickable = true;
  pick_.push_back(&peer);
  seam_.publish_line_count(static_cast<std::uint32_t>(pick_.size()));
}

void LineService::leave_pick(LinePeer& peer) {
  if (!peer.line_pickable) {
    return;
  }
  peer.line_pickable = false;
  LinePeer* last = pick_.back();  // swap-remove keeps the pick array dense
  pick_[peer.line_index] = last;
  last->line_index = peer.line_index;
  pick_.pop_back();
  seam_.publish_line_count(static_cast<std::uint32_t>(pick_.size()));
}

bool LineService::half_close(LinePeer& peer) {
  remove(peer);
  half_closed_.insert(peer);
  peer.line_half_closed = true;
  for (unsigned s = 0; s < config_.shard_count; ++s) {
    if (seam_.line_count(s) != 0) {
      return false;
    }
  }
  return true;
}

void LineService::forget(LinePeer& peer) {
  if (peer.line_half_closed) {
    half_closed_.erase(peer);
    peer.line_half_closed = false;
  }
}

LinePeer* LineService::reachable(protocol::UserId id) {
  RegistryEntry* entry = peers_.find(id);
  if (entry == nullptr) {
    entry = half_closed_.find(id);
  }
  return static_cast<LinePeer*>(entry);
}

void LineService::remove(LinePeer& peer) {
  peers_.erase(peer);
  leave_pick(peer);
  drop_held(peer);  // as its pending messages below: nobody is left to answer

  // Every shard may own an X this connection sent or was asked to answer. Origin first: a message it
  // sent to itself is then dropped, not handed on (core/line_pending.hpp).
  const LineEndpoint gone{config_.shard_index, peer.id};
  for (unsigned s = 0; s < config_.shard_count; ++s) {
    post_line(s, ShardMessage::Kind::kLineOriginGone, {}, gone);
    auto* target_gone = new LineMessage(ShardMessage::Kind::kLineTargetGone, config_.shard_index);
    target_gone->endpoint_shard = gone.shard;
    target_gone->endpoint_conn = gone.conn;
    target_gone->hub_stopping = stopping_;  // a stopping hub forwards nothing more: every connection is going
    seam_.post(s, target_gone);
  }
}

void LineService::on_line(LinePeer& peer, std::string_view line) {
  const LineCommand command = parse_line(line);
  const LineEndpoint sender{config_.shard_index, peer.id};
  switch (command.verb) {
    case LineCommand::Verb::kMessage:
      // Never refused: past the allowance, with hub memory past half the budget, it is held back (a
      // few bytes where taking it in costs 256 more) until oks bring the allowance down. Reading on
      // reaches the oks the same client queued behind its messages.
      if (peer.line_held_count != 0 || (over_allowance(peer) && seam_.holding_back())) {
        hold_back(peer, command.payload);
      } else {
        take_in(peer, command.payload);
      }
      break;
    case LineCommand::Verb::kOk:
      post_line(owner_of(command.payload), ShardMessage::Kind::kLineOk, command.payload, sender);
      break;
    case LineCommand::Verb::kUnknown:
      counters_.line_protocol_errors.add(1);
      seam_.write(peer, kUnknownCommandLine);
      break;
  }
}

void LineService::take_in(LinePeer& peer, std::string_view x) {
  peer.line_pending_bytes += pending_cost(x.size());
  counters_.line_messages_in.add(1);
  post_line(owner_of(x), ShardMessage::Kind::kLineAdd, x, LineEndpoint{config_.shard_index, peer.id});
}

void LineService::hold_back(LinePeer& peer, std::string_view x) {
  held_bytes_ -= allocated(peer.line_held);
  peer.line_held.append(x);
  peer.line_held.push_back('\n');  // X holds no newline
  held_bytes_ += allocated(peer.line_held);
  ++peer.line_held_count;
  ++held_messages_;
}

void LineService::release_held(LinePeer& peer) {
  std::string& held = peer.line_held;
  while (peer.line_held_count != 0 && !(over_allowance(peer) && seam_.holding_back())) {
    const std::size_t end = held.find('\n', peer.line_held_head);
    take_in(peer, std::string_view(held).substr(peer.line_held_head, end - peer.line_held_head));
    peer.line_held_head = end + 1;
    --peer.line_held_count;
    --held_messages_;
  }
  if (peer.line_held_count == 0) {
    drop_held(peer);
  } else if (peer.line_held_head > held.size() / 2) {  // what was taken in goes, amortised
    held.erase(0, peer.line_held_head);
    peer.line_held_head = 0;
  }
  if (peer.line_throttled && peer.line_held_count == 0) {
    peer.line_throttled = false;
    seam_.resume_reading(peer);
  }
}

void LineService::drop_held(LinePeer& peer) {
  held_messages_ -= peer.line_held_count;
  held_bytes_ -= allocated(peer.line_held);
  std::string().swap(peer.line_held);
  peer.line_held_head = 0;
  peer.line_held_count = 0;
}

void LineService::on_message(const LineMessage& message) {
  const LineEndpoint endpoint{message.endpoint_shard, message.endpoint_conn};
  switch (message.kind) {
    case ShardMessage::Kind::kLineAdd: on_add(message); break;
    case ShardMessage::Kind::kLineForward: on_forward(message); break;
    case ShardMessage::Kind::kLineAssigned: pending_.retarget(message.seq, endpoint); break;
    case ShardMessage::Kind::kLineNoTarget:
      forward_to_shard(message.x, message.seq, message.tries,
                       LineEndpoint{message.sender_shard, message.sender_conn});
      break;
    case ShardMessage::Kind::kLineOk: on_ok(message); break;
    case ShardMessage::Kind::kLineDeliverOk: on_deliver_ok(message); break;
    case ShardMessage::Kind::kLineOriginGone: pending_.drop_origin(endpoint); break;
    case ShardMessage::Kind::kLineTargetGone: on_target_gone(message); break;
    default: break;  // not a line message: the shard dispatches those itself
  }
}

unsigned LineService::owner_of(std::string_view x) const {
  return KeyedHash::shard_of(x_hash_(x), config_.shard_count);
}

// A shard weighted by its line-connection count, so the pick is uniform over connections.
bool LineService::choose_shard(unsigned& shard) {
  std::uint64_t total = 0;
  for (unsigned s = 0; s < config_.shard_count; ++s) {
    total += seam_.line_count(s);
  }
  if (total == 0) {
    return false;
  }
  std::uint64_t pick = std::uniform_int_distribution<std::uint64_t>(0, total - 1)(rng_);
  for (unsigned s = 0; s < config_.shard_count; ++s) {
    const std::uint64_t count = seam_.line_count(s);
    if (pick < count) {
      shard = s;
      return true;
    }
    pick -= count;
  }
  shard = config_.shard_count - 1;  // counts moved under us: any shard will do, it re-checks
  return true;
}

bool LineService::forward_to_shard(std::string_view x, std::uint64_t seq, unsigned tries,
                                   LineEndpoint sender) {
  if (stopping_ || tries >= kMaxForwardTries) {
    return false;  // nobody to forward to: the entry stays pending; its origin's timeout takes over
  }
  unsigned target = 0;
  // Nobody live to pick: the sender is always a candidate, and a half-closed one still reads.
  const bool to_sender = !choose_shard(target);
  if (to_sender) {
    target = sender.shard;
  }
  auto* message = new LineMessage(ShardMessage::Kind::kLineForward, config_.shard_index);
  message->to_sender = to_sender;
  message->x.assign(x.data(), x.size());
  message->endpoint_shard = config_.shard_index;
  message->seq = seq;
  message->tries = tries;
  message->sender_shard = sender.shard;
  message->sender_conn = sender.conn;
  seam_.post(target, message);
  return true;
}

void LineService::post_line(unsigned target, ShardMessage::Kind kind, std::string_view x,
                            LineEndpoint endpoint, std::uint64_t seq) {
  auto* message = new LineMessage(kind, config_.shard_index);
  message->x.assign(x.data(), x.size());
  message->endpoint_shard = endpoint.shard;
  message->endpoint_conn = endpoint.conn;
  message->seq = seq;
  seam_.post(target, message);
}

// On X's owner: record the message (target not chosen yet) and send it towards a random shard.
void LineService::on_add(const LineMessage& message) {
  const LineEndpoint origin{message.endpoint_shard, message.endpoint_conn};
  const std::uint64_t seq = pending_.add(message.x, origin, LineEndpoint{config_.shard_index, 0});
  forward_to_shard(message.x, seq, 0, origin);
}

// On the chosen shard: write `message X` to a random local line connection, tell X's owner who.
LinePeer* LineService::forward_target(const LineMessage& message) {
  if (message.to_sender) {
    return reachable(message.sender_conn);
  }
  if (pick_.empty()) {
    return nullptr;
  }
  return pick_[std::uniform_int_distribution<std::size_t>(0, pick_.size() - 1)(rng_)];
}

void LineService::on_forward(const LineMessage& message) {
  LinePeer* const chosen = forward_target(message);
  if (chosen == nullptr) {
    auto* back = new LineMessage(ShardMessage::Kind::kLineNoTarget, config_.shard_index);  // sender kept
    back->x = message.x;
    back->endpoint_shard = config_.shard_index;
    back->seq = message.seq;
    back->tries = message.tries + 1;
    back->sender_shard = message.sender_shard;
    back->sender_conn = message.sender_conn;
    seam_.post(message.origin_shard, back);
    return;
  }
  LinePeer& target = *chosen;
  const protocol::UserId target_id = target.id;  // the write may close the target
  std::string line;
  append_message_line(line, message.x);
  seam_.write(target, line);
  counters_.line_forwards.add(1);
  if (config_.shard_index == message.sender_shard && target_id == message.sender_conn) {
    // Forwarded back to its sender, whose `ok` can only come after its own earlier writes: holding it
    // against the sender's allowance would stop reading the very bytes that answer it.
    return_allowance(target, message.x);
  }
  post_line(message.origin_shard, ShardMessage::Kind::kLineAssigned, {},
            LineEndpoint{config_.shard_index, target_id}, message.seq);
}

// On X's owner: the oldest pending `message X` is answered; its origin gets `ok X`.
void LineService::on_ok(const LineMessage& message) {
  const std::optional<PendingMessages::Answered> answered = pending_.answer(message.x);
  if (!answered) {
    counters_.line_unmatched_oks.add(1);
    return;
  }
  auto* deliver = new LineMessage(ShardMessage::Kind::kLineDeliverOk, config_.shard_index);
  deliver->x = message.x;
  deliver->endpoint_shard = answered->origin.shard;
  deliver->endpoint_conn = answered->origin.conn;
  deliver->self_loop = answered->target == answered->origin;
  seam_.post(answered->origin.shard, deliver);
}

// On the origin's shard: write `ok X` to it, if it is still here.
void LineService::on_deliver_ok(const LineMessage& message) {
  LinePeer* const found = reachable(message.endpoint_conn);
  if (found == nullptr) {
    return;  // the origin left after its ok was matched
  }
  LinePeer& origin = *found;
  if (!message.self_loop) {
    return_allowance(origin, message.x);
  }
  std::string line;
  append_ok_line(line, message.x);
  seam_.write(origin, line);
  counters_.line_oks_delivered.add(1);
}

void LineService::return_allowance(LinePeer& peer, std::string_view x) {
  peer.line_pending_bytes -= std::min(peer.line_pending_bytes, pending_cost(x.size()));
  if (peer.line_held_count != 0 && peer.line_pending_bytes <= config_.max_pending_bytes / 2) {
    release_held(peer);  // half the allowance again (hysteresis, not per ok)
  }
}

// On every shard: messages forwarded to a connection that left unanswered go to someone else.
void LineService::on_target_gone(const LineMessage& message) {
  const std::vector<PendingMessages::Orphan> orphans =
      pending_.take_target(LineEndpoint{message.endpoint_shard, message.endpoint_conn});
  if (!config_.reforward || message.hub_stopping) {
    return;  // left pending: the origin's own timeout and retry recover it (or the hub is going away)
  }
  for (const PendingMessages::Orphan& orphan : orphans) {
    if (forward_to_shard(std::string(orphan.x), orphan.seq, 0, orphan.origin)) {
      counters_.line_reforwards.add(1);
    }
  }
}

}  // namespace ringhub
