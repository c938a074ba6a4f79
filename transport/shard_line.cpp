// Shard: the line protocol. `message X` goes to a connection picked uniformly at random across every
// shard; `ok X` goes back to whoever sent the oldest pending `message X`. The pending table for X lives
// on one shard, owner_of(X) (a keyed hash), so "oldest first" holds hub-wide; the others talk to it by
// message. Shards pick a random receiver shard weighted by its line-connection count.
#include <spdlog/spdlog.h>

#include <cstring>

#include "transport/shard.hpp"

namespace ringhub {

namespace {
// A forward that lands on a shard whose line connections all left meanwhile is sent elsewhere; after
// this many misses in a row the message waits (still pending) until its origin gives up or retries.
constexpr unsigned kMaxForwardTries = 8;
}  // namespace

void Shard::register_line(Connection& conn) {
  line_registry_.insert(conn);
  conn.line_index = static_cast<std::uint32_t>(line_conns_.size());
  line_conns_.push_back(&conn);
  shared_.line_counts[index_].store(static_cast<std::uint32_t>(line_conns_.size()),
                                    std::memory_order_relaxed);
}

void Shard::unregister_line(Connection& conn) {
  line_registry_.erase(conn);
  Connection* last = line_conns_.back();  // swap-remove keeps the pick array dense
  line_conns_[conn.line_index] = last;
  last->line_index = conn.line_index;
  line_conns_.pop_back();
  shared_.line_counts[index_].store(static_cast<std::uint32_t>(line_conns_.size()),
                                    std::memory_order_relaxed);
  // Every shard may own an X this connection sent or was asked to answer.
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    post_line(s, ShardMessage::Kind::kLineOriginGone, {}, index_, conn.id);
    auto* gone = new LineMessage(ShardMessage::Kind::kLineTargetGone, index_);
    gone->endpoint_shard = index_;
    gone->endpoint_conn = conn.id;
    gone->hub_stopping = stopping_;  // a stopping hub forwards nothing more: every connection is going
    post(s, gone);
  }
}

void Shard::on_line_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) {
  const LineStatus status = conn.lines->feed(std::span<const std::uint8_t>(buffer.data(), length),
                                             [&](std::string_view line) { return on_line(conn, line); });
  if (status == LineStatus::kTooLong) {
    counters_.line_protocol_errors.add(1);
    begin_drain(conn, &linger_ts_, kLineTooLongLine);
  }
}

bool Shard::on_line(Connection& conn, std::string_view line) {
  const LineCommand command = parse_line(line);
  switch (command.verb) {
    case LineCommand::Verb::kMessage:
      // Never refused: past --max-line-pending-bytes the connection is simply not read any further
      // (shard_reading.cpp) until its oks come back.
      conn.line_pending_bytes += pending_cost(command.payload.size());
      counters_.line_messages_in.add(1);
      post_line(owner_of(command.payload), ShardMessage::Kind::kLineAdd, command.payload, index_, conn.id);
      break;
    case LineCommand::Verb::kOk:
      post_line(owner_of(command.payload), ShardMessage::Kind::kLineOk, command.payload, index_, conn.id);
      break;
    case LineCommand::Verb::kUnknown:
      counters_.line_protocol_errors.add(1);
      send_text(conn, kUnknownCommandLine);
      break;
  }
  return conn.state == ConnState::kOpen;
}

void Shard::send_text(Connection& conn, std::string_view text) {
  enqueue_copy(conn, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

unsigned Shard::owner_of(std::string_view x) const {
  return KeyedHash::shard_of(shared_.x_hash(x), shared_.shard_count);
}

bool Shard::choose_line_shard(unsigned& shard) {
  std::uint64_t total = 0;
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    total += shared_.line_counts[s].load(std::memory_order_relaxed);
  }
  if (total == 0) {
    return false;
  }
  std::uint64_t pick = std::uniform_int_distribution<std::uint64_t>(0, total - 1)(rng_);
  for (unsigned s = 0; s < shared_.shard_count; ++s) {
    const std::uint64_t count = shared_.line_counts[s].load(std::memory_order_relaxed);
    if (pick < count) {
      shard = s;
      return true;
    }
    pick -= count;
  }
  shard = shared_.shard_count - 1;  // counts moved under us: any shard will do, it re-checks
  return true;
}

bool Shard::forward_to_shard(std::string_view x, std::uint64_t seq, unsigned tries, LineEndpoint sender) {
  unsigned target = 0;
  if (stopping_ || tries >= kMaxForwardTries || !choose_line_shard(target)) {
    return false;  // nobody to forward to: the entry stays pending; its origin's timeout takes over
  }
  auto* message = new LineMessage(ShardMessage::Kind::kLineForward, index_);
  message->x.assign(x.data(), x.size());
  message->endpoint_shard = index_;
  message->seq = seq;
  message->tries = tries;
  message->sender_shard = sender.shard;
  message->sender_conn = sender.conn;
  post(target, message);
  return true;
}

void Shard::post_line(unsigned target, ShardMessage::Kind kind, std::string_view x,
                      std::uint32_t endpoint_shard, std::uint64_t endpoint_conn, std::uint64_t seq,
                      unsigned tries) {
  auto* message = new LineMessage(kind, index_);
  message->x.assign(x.data(), x.size());
  message->endpoint_shard = endpoint_shard;
  message->endpoint_conn = endpoint_conn;
  message->seq = seq;
  message->tries = tries;
  post(target, message);
}

void Shard::on_line_message(LineMessage* message) {
  const LineEndpoint endpoint{message->endpoint_shard, message->endpoint_conn};
  switch (message->kind) {
    case ShardMessage::Kind::kLineAdd: on_line_add(message); break;
    case ShardMessage::Kind::kLineForward: on_line_forward(message); break;
    case ShardMessage::Kind::kLineAssigned: pending_.retarget(message->seq, endpoint); break;
    case ShardMessage::Kind::kLineNoTarget: on_line_no_target(message); break;
    case ShardMessage::Kind::kLineOk: on_line_ok(message); break;
    case ShardMessage::Kind::kLineDeliverOk: on_line_deliver_ok(message); break;
    case ShardMessage::Kind::kLineOriginGone: pending_.drop_origin(endpoint); break;
    case ShardMessage::Kind::kLineTargetGone: on_line_target_gone(message); break;
    default: break;
  }
  retire(message);
}

// On X's owner: record the message (target not chosen yet) and send it towards a random shard.
void Shard::on_line_add(LineMessage* message) {
  const LineEndpoint origin{message->endpoint_shard, message->endpoint_conn};
  const std::uint64_t seq = pending_.add(message->x, origin, LineEndpoint{index_, 0});
  forward_to_shard(message->x, seq, 0, origin);
}

// On the chosen shard: write `message X` to a random local line connection, tell X's owner who.
void Shard::on_line_forward(LineMessage* message) {
  if (line_conns_.empty()) {
    auto* back = new LineMessage(ShardMessage::Kind::kLineNoTarget, index_);  // to X's owner, sender kept
    back->x = message->x;
    back->endpoint_shard = index_;
    back->seq = message->seq;
    back->tries = message->tries + 1;
    back->sender_shard = message->sender_shard;
    back->sender_conn = message->sender_conn;
    post(message->origin_shard, back);
    return;
  }
  const auto pick = std::uniform_int_distribution<std::size_t>(0, line_conns_.size() - 1)(rng_);
  Connection& target = *line_conns_[pick];
  std::string line;
  append_message_line(line, message->x);
  send_text(target, line);
  counters_.line_forwards.add(1);
  if (index_ == message->sender_shard && target.id == message->sender_conn) {
    // Forwarded back to its sender, whose `ok` can only come after its own earlier writes: holding it
    // against the sender's allowance would stop reading the very bytes that answer it.
    return_line_allowance(target, message->x);
  }
  post_line(message->origin_shard, ShardMessage::Kind::kLineAssigned, {}, index_, target.id, message->seq);
}

void Shard::on_line_no_target(LineMessage* message) {
  forward_to_shard(message->x, message->seq, message->tries,
                   LineEndpoint{message->sender_shard, message->sender_conn});
}

// On X's owner: the oldest pending `message X` is answered; its origin gets `ok X`.
void Shard::on_line_ok(LineMessage* message) {
  const std::optional<PendingMessages::Answered> answered = pending_.answer(message->x);
  if (!answered) {
    counters_.line_unmatched_oks.add(1);
    return;
  }
  auto* deliver = new LineMessage(ShardMessage::Kind::kLineDeliverOk, index_);
  deliver->x = message->x;
  deliver->endpoint_shard = answered->origin.shard;
  deliver->endpoint_conn = answered->origin.conn;
  deliver->self_loop = answered->target == answered->origin;
  post(answered->origin.shard, deliver);
}

void Shard::on_line_deliver_ok(LineMessage* message) {
  RegistryEntry* entry = line_registry_.find(message->endpoint_conn);
  if (entry == nullptr) {
    return;  // the origin left after its ok was matched
  }
  auto& origin = static_cast<Connection&>(*entry);
  if (!message->self_loop) {
    return_line_allowance(origin, message->x);
  }
  std::string line;
  append_ok_line(line, message->x);
  send_text(origin, line);
  counters_.line_oks_delivered.add(1);
}

void Shard::return_line_allowance(Connection& conn, std::string_view x) {
  conn.line_pending_bytes -= std::min(conn.line_pending_bytes, pending_cost(x.size()));
  if (conn.line_throttled && conn.line_pending_bytes <= config_.max_line_pending_bytes / 2) {
    conn.line_throttled = false;  // half the allowance again: read it (hysteresis, not per ok)
    resume_reading(conn);
  }
}

// On every shard: messages forwarded to a connection that left unanswered go to someone else.
void Shard::on_line_target_gone(LineMessage* message) {
  const std::vector<PendingMessages::Orphan> orphans =
      pending_.take_target(LineEndpoint{message->endpoint_shard, message->endpoint_conn});
  if (!config_.line_reforward || message->hub_stopping) {
    return;  // left pending: the origin's own timeout and retry recover it (or the hub is going away)
  }
  for (const PendingMessages::Orphan& orphan : orphans) {
    if (forward_to_shard(std::string(orphan.x), orphan.seq, 0, orphan.origin)) {
      counters_.line_reforwards.add(1);
    }
  }
}

}  // namespace ringhub
