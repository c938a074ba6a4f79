// The line protocol's semantics on one shard, with no ring and no socket: `message X` goes to a
// connection picked uniformly at random across every shard, `ok X` back to whoever sent the oldest
// pending `message X`. The shard drives it through LineSeam (transport/shard_line.cpp); the tests
// drive it through a fake seam and an N-shard simulator (tests/core/line_service_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

#include "core/keyed_hash.hpp"
#include "core/line_pending.hpp"
#include "core/peer.hpp"
#include "core/registry.hpp"
#include "core/shard_message.hpp"
#include "core/stats.hpp"

namespace ringhub {

// What the service asks of its shard. Calls come on the shard's thread only.
class LineSeam {
 public:
  // Queues a copy of `text` to `peer`. May find the peer a slow consumer and close it.
  virtual void write(LinePeer& peer, std::string_view text) = 0;
  // `peer` holds no message back any more: read it again if it was throttled.
  virtual void resume_reading(LinePeer& peer) = 0;
  // Whether hub memory is past half the budget, where messages past a connection's allowance are held
  // back (transport/memory_gate).
  virtual bool holding_back() const = 0;
  // Hands `message` to shard `target` (this one included); the seam owns it from here.
  virtual void post(unsigned target, LineMessage* message) = 0;
  // Line connections open on `shard`, as last published (another shard's figure may lag).
  virtual std::uint32_t line_count(unsigned shard) const = 0;
  // Publishes this shard's line-connection count for the others' random pick.
  virtual void publish_line_count(std::uint32_t count) = 0;

 protected:
  ~LineSeam() = default;
};

struct LineServiceConfig {
  unsigned shard_index = 0;
  unsigned shard_count = 1;
  // Whether messages forwarded to a connection that left unanswered go to someone else (else they
  // stay pending until their origin's timeout and retry).
  bool reforward = true;
  // A connection with more than this many pending_cost bytes unanswered has the messages it sends held
  // back while hub memory is past half the budget (--max-line-pending-bytes).
  std::size_t max_pending_bytes = 0;
};

// Contract: owned and used by one shard's thread. The pending table for an X lives on its owner
// shard (a keyed hash of X), so "oldest first" holds hub-wide; the others reach it by message.
class LineService {
 public:
  LineService(const LineServiceConfig& config, const KeyedHash& x_hash, LineSeam& seam,
              ShardCounters& counters, std::uint64_t seed);
  LineService(const LineService&) = delete;
  LineService& operator=(const LineService&) = delete;

  // A line connection arrived on this shard / is leaving it (tells every shard, which hand its
  // unanswered messages to someone else).
  void add(LinePeer& peer);
  void remove(LinePeer& peer);
  // `peer` half-closed (EOF): it leaves as remove() says (its pending messages are dropped, those it
  // was asked to answer go elsewhere), but until forget() it still reads: a message it sent before its
  // EOF that finds nobody live comes back to it, and an ok already matched for it is still written.
  // Returns whether nobody is live now, when such a message may still come back.
  bool half_close(LinePeer& peer);
  void forget(LinePeer& peer);  // a half-closed peer closes
  // One complete line from `peer`, without its newline.
  void on_line(LinePeer& peer, std::string_view line);
  // A message another shard (or this one) posted here.
  void on_message(const LineMessage& message);
  // The hub is stopping: forward nothing more.
  void stop() { stopping_ = true; }

  // Whether `peer` has more unanswered than its allowance.
  bool over_allowance(const LinePeer& peer) const {
    return peer.line_pending_bytes > config_.max_pending_bytes;
  }
  // Takes in what `peer` held back, oldest first, as far as its allowance and hub memory let it; once
  // nothing is held, a throttled peer is read again. The shard calls it when hub memory falls below
  // where messages are held back; oks call it when they bring the allowance down.
  void release_held(LinePeer& peer);
  // Messages held back on this shard, and the bytes that holds (allocated).
  std::size_t held_messages() const { return held_messages_; }
  std::size_t held_bytes() const { return held_bytes_; }
  unsigned owner_of(std::string_view x) const;
  Registry& peers() { return peers_; }
  std::size_t peer_count() const { return peers_.size(); }
  const PendingMessages& pending() const { return pending_; }

 private:
  bool choose_shard(unsigned& shard);
  void leave_pick(LinePeer& peer);
  // Registered, or half-closed and still reading: whom a forward back to its sender or an ok may reach.
  LinePeer* reachable(protocol::UserId id);
  // Where a forward lands: a random local connection, or (to_sender) the sender if still registered.
  LinePeer* forward_target(const LineMessage& message);
  bool forward_to_shard(std::string_view x, std::uint64_t seq, unsigned tries, LineEndpoint sender);
  void post_line(unsigned target, ShardMessage::Kind kind, std::string_view x, LineEndpoint endpoint,
                 std::uint64_t seq = 0);
  void return_allowance(LinePeer& peer, std::string_view x);
  // `message X` taken in: counted against the allowance and sent to X's owner shard.
  void take_in(LinePeer& peer, std::string_view x);
  void hold_back(LinePeer& peer, std::string_view x);
  void drop_held(LinePeer& peer);
  void on_add(const LineMessage& message);
  void on_forward(const LineMessage& message);
  void on_ok(const LineMessage& message);
  void on_deliver_ok(const LineMessage& message);
  void on_target_gone(const LineMessage& message);

  LineServiceConfig config_;
  const KeyedHash& x_hash_;
  LineSeam& seam_;
  ShardCounters& counters_;
  Registry peers_;               // local line connections, by id
  Registry half_closed_;         // local line connections gone from the service, still reading
  std::vector<LinePeer*> pick_;  // the same, dense, for a uniform random pick
  PendingMessages pending_;      // messages whose X this shard owns
  std::mt19937_64 rng_;
  bool stopping_ = false;
  std::size_t held_messages_ = 0;
  std::size_t held_bytes_ = 0;  // what every peer's line_held has allocated
};

}  // namespace ringhub
