// Tests for core/line_service without rings or sockets: N LineServices joined by a single-threaded
// simulator that holds every posted message until the test delivers it, in the order the test
// chooses. So cross-shard orderings (an origin leaving before its ok, a target leaving before it
// answers, a re-forward landing on a shard whose last connection just left) are deterministic tests.
#include "core/line_service.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/line_protocol.hpp"
#include "tests/core/test_hash_key.hpp"

namespace ringhub {
namespace {

// The pick of a target connection is random; these seeds make each run the same.
constexpr std::uint64_t kSeedBase = 42;
// An allowance that two pending short messages pass (2 x pending_cost, about 2 x 262 bytes) and one
// still holds more than half of.
constexpr std::size_t kSmallAllowance = 500;

std::string message_line(std::string_view x) {
  std::string line;
  append_message_line(line, x);
  return line;
}

std::string ok_line(std::string_view x) {
  std::string line;
  append_ok_line(line, x);
  return line;
}

// N shards' LineServices and the messages in flight between them.
class Simulator {
 public:
  struct Posted {
    unsigned from = 0;
    unsigned to = 0;
    std::unique_ptr<LineMessage> message;
  };

  explicit Simulator(unsigned shards, std::uint64_t seed = kSeedBase, bool reforward = true,
                     std::size_t allowance = 1 << 20) {
    counts_.assign(shards, 0);
    for (unsigned i = 0; i < shards; ++i) {
      shards_.push_back(std::make_unique<ShardSim>(*this, i));
    }
    for (unsigned i = 0; i < shards; ++i) {
      const LineServiceConfig config{
          .shard_index = i, .shard_count = shards, .reforward = reforward, .max_pending_bytes = allowance};
      shards_[i]->service =
          std::make_unique<LineService>(config, test_hash(), *shards_[i], shards_[i]->counters, seed + i);
    }
  }

  LineService& service(unsigned shard) { return *shards_.at(shard)->service; }
  ShardCounters& counters(unsigned shard) { return shards_.at(shard)->counters; }

  // A new line connection on `shard`; ids are unique hub-wide, as the hub's are.
  LinePeer& connect(unsigned shard) {
    peers_.push_back(std::make_unique<LinePeer>());
    LinePeer& peer = *peers_.back();
    peer.id = ++last_id_;
    shard_of_[peer.id] = shard;
    service(shard).add(peer);
    return peer;
  }
  void disconnect(LinePeer& peer) { service(shard_of_.at(peer.id)).remove(peer); }
  // EOF: gone from the service but still reading until forget(); whether nobody is live now.
  bool half_close(LinePeer& peer) { return service(shard_of_.at(peer.id)).half_close(peer); }
  void forget(LinePeer& peer) { service(shard_of_.at(peer.id)).forget(peer); }
  void say(LinePeer& peer, std::string_view line) { service(shard_of_.at(peer.id)).on_line(peer, line); }

  std::deque<Posted>& in_flight() { return in_flight_; }
  // Delivers the in-flight message at `index` (0 = the oldest).
  void deliver(std::size_t index) {
    Posted posted = std::move(in_flight_.at(index));
    in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(index));
    service(posted.to).on_message(*posted.message);
  }
  // Delivers the oldest message of `kind`; false if none is in flight.
  bool deliver_first(ShardMessage::Kind kind) {
    for (std::size_t i = 0; i < in_flight_.size(); ++i) {
      if (in_flight_[i].message->kind == kind) {
        deliver(i);
        return true;
      }
    }
    return false;
  }
  // Delivers in post order until nothing is in flight.
  void settle() {
    while (!in_flight_.empty()) {
      deliver(0);
    }
  }

  // Everything written to connection `id`, in order.
  const std::string& written(protocol::UserId id) { return written_[id]; }
  // The connection that was last written `message X`, if any.
  std::optional<protocol::UserId> receiver_of(std::string_view x) const {
    const std::string line = message_line(x);
    for (auto it = log_.rbegin(); it != log_.rend(); ++it) {
      if (it->second == line) {
        return it->first;
      }
    }
    return std::nullopt;
  }
  LinePeer& peer(protocol::UserId id) { return *peers_.at(id - 1); }
  const std::vector<protocol::UserId>& resumed() const { return resumed_; }
  // Hub memory past half the budget, or not: messages past a connection's allowance are held back.
  void hold_back_lines(bool on) { holding_back_ = on; }

 private:
  struct ShardSim final : LineSeam {
    ShardSim(Simulator& sim, unsigned index) : sim(sim), index(index) {}
    void write(LinePeer& peer, std::string_view text) override {
      sim.written_[peer.id] += text;
      sim.log_.emplace_back(peer.id, text);
    }
    void resume_reading(LinePeer& peer) override { sim.resumed_.push_back(peer.id); }
    bool holding_back() const override { return sim.holding_back_; }
    void post(unsigned target, LineMessage* message) override {
      sim.in_flight_.push_back(Posted{index, target, std::unique_ptr<LineMessage>(message)});
    }
    std::uint32_t line_count(unsigned shard) const override { return sim.counts_.at(shard); }
    void publish_line_count(std::uint32_t count) override { sim.counts_.at(index) = count; }

    Simulator& sim;
    unsigned index;
    ShardCounters counters;
    std::unique_ptr<LineService> service;
  };

  std::vector<std::unique_ptr<ShardSim>> shards_;
  std::vector<std::uint32_t> counts_;
  std::vector<std::unique_ptr<LinePeer>> peers_;  // index id - 1
  std::map<protocol::UserId, unsigned> shard_of_;
  std::map<protocol::UserId, std::string> written_;
  std::vector<std::pair<protocol::UserId, std::string>> log_;  // every write, in order
  std::vector<protocol::UserId> resumed_;
  bool holding_back_ = false;
  std::deque<Posted> in_flight_;
  protocol::UserId last_id_ = 0;
};

// An X whose pending entry lives on `owner` of `shards`.
std::string x_owned_by(unsigned owner, unsigned shards, std::string_view prefix = "x") {
  for (unsigned i = 0;; ++i) {
    std::string x(prefix);
    x.append(std::to_string(i));
    if (KeyedHash::shard_of(test_hash()(x), shards) == owner) {
      return x;
    }
  }
}

// The line without its newline: what a connection sends.
std::string_view command(const std::string& line) {
  return std::string_view(line).substr(0, line.size() - 1);
}

TEST(LineService, MessageGoesToALiveConnectionAndItsOkBackToTheSender) {
  Simulator sim(3);
  LinePeer& a = sim.connect(0);
  sim.connect(1);
  sim.connect(2);
  const std::string x = x_owned_by(1, 3);
  sim.say(a, command(message_line(x)));
  sim.settle();
  const std::optional<protocol::UserId> receiver = sim.receiver_of(x);
  ASSERT_TRUE(receiver);
  sim.say(sim.peer(*receiver), command(ok_line(x)));
  sim.settle();
  EXPECT_NE(sim.written(a.id).find(ok_line(x)), std::string::npos);
  EXPECT_EQ(sim.service(1).pending().size(), 0U);
  EXPECT_EQ(a.line_pending_bytes, 0U);
}

TEST(LineService, EveryConnectionIsPickedIncludingTheSender) {
  Simulator sim(2);
  LinePeer& a = sim.connect(0);
  const LinePeer& b = sim.connect(1);
  std::map<protocol::UserId, unsigned> picked;
  for (unsigned i = 0; i < 200; ++i) {
    std::string x("m");
    x.append(std::to_string(i));
    sim.say(a, command(message_line(x)));
    sim.settle();
    const std::optional<protocol::UserId> receiver = sim.receiver_of(x);
    ASSERT_TRUE(receiver);
    ++picked[*receiver];
  }
  // Uniform over 2 connections: each gets 100 +- a lot; 0 would mean one is never picked.
  EXPECT_GT(picked[a.id], 50U);
  EXPECT_GT(picked[b.id], 50U);
}

TEST(LineService, OkAnswersTheOldestPendingMessageOfThatX) {
  Simulator sim(2);
  LinePeer& first = sim.connect(0);
  LinePeer& second = sim.connect(1);
  const std::string x = x_owned_by(0, 2);
  sim.say(first, command(message_line(x)));
  sim.settle();
  sim.say(second, command(message_line(x)));
  sim.settle();
  sim.say(first, command(ok_line(x)));
  sim.settle();
  EXPECT_NE(sim.written(first.id).find(ok_line(x)), std::string::npos);
  EXPECT_EQ(sim.written(second.id).find(ok_line(x)), std::string::npos);
  EXPECT_EQ(sim.service(0).pending().size(), 1U);
}

TEST(LineService, UnknownCommandGetsAnErrorLineAndCountsAProtocolError) {
  Simulator sim(1);
  LinePeer& a = sim.connect(0);
  sim.say(a, "hello");
  EXPECT_EQ(sim.written(a.id), kUnknownCommandLine);
  EXPECT_EQ(sim.counters(0).line_protocol_errors.get(), 1U);
  EXPECT_TRUE(sim.in_flight().empty());
}

TEST(LineService, OkWithNothingPendingIsCountedUnmatched) {
  Simulator sim(2);
  LinePeer& a = sim.connect(0);
  const std::string x = x_owned_by(1, 2);
  sim.say(a, command(ok_line(x)));
  sim.settle();
  EXPECT_EQ(sim.counters(1).line_unmatched_oks.get(), 1U);
  EXPECT_EQ(sim.written(a.id), "");
}

// Sends `message X` from `origin` for X values owned by `owner` until one is forwarded to another
// connection (the pick includes the sender), and returns that X. A message that came back to the
// origin is answered, so nothing else stays pending.
std::string forward_to_another(Simulator& sim, LinePeer& origin, unsigned owner, unsigned shards,
                               const std::string& prefix) {
  for (unsigned attempt = 0;; ++attempt) {
    std::string attempt_prefix = prefix;
    attempt_prefix.append(std::to_string(attempt)).append("-");
    std::string x = x_owned_by(owner, shards, attempt_prefix);
    sim.say(origin, command(message_line(x)));
    sim.settle();
    const std::optional<protocol::UserId> receiver = sim.receiver_of(x);
    EXPECT_TRUE(receiver);
    if (!receiver || *receiver != origin.id) {
      return x;
    }
    sim.say(origin, command(ok_line(x)));
    sim.settle();
  }
}

// The origin leaves after its message was forwarded and before the ok reaches X's owner: the ok
// matches nothing and nobody is written to.
TEST(LineService, OriginGoneBeforeTheOkDropsTheMessage) {
  Simulator sim(3);
  LinePeer& origin = sim.connect(0);
  sim.connect(2);
  const std::string x = forward_to_another(sim, origin, 1, 3, "o");
  LinePeer& receiver = sim.peer(*sim.receiver_of(x));
  sim.disconnect(origin);  // posts OriginGone and TargetGone to every shard
  sim.say(receiver, command(ok_line(x)));
  // The departure's messages were posted first, so they arrive first at shard 1 too.
  sim.settle();
  EXPECT_EQ(sim.counters(1).line_unmatched_oks.get(), 1U);
  EXPECT_EQ(sim.service(1).pending().size(), 0U);
  EXPECT_EQ(sim.written(origin.id).find(ok_line(x)), std::string::npos);
}

// The ok is matched first and the origin leaves while kLineDeliverOk is on its way: the origin's
// shard finds nobody and writes nothing.
TEST(LineService, OriginGoneWhileItsOkIsInFlightWritesNothing) {
  Simulator sim(2);
  LinePeer& origin = sim.connect(0);
  const std::string x = x_owned_by(1, 2);
  sim.say(origin, command(message_line(x)));
  sim.settle();
  sim.say(origin, command(ok_line(x)));  // the only connection: it got its own message
  ASSERT_TRUE(sim.deliver_first(ShardMessage::Kind::kLineOk));
  ASSERT_EQ(sim.in_flight().size(), 1U);
  ASSERT_EQ(sim.in_flight().front().message->kind, ShardMessage::Kind::kLineDeliverOk);
  sim.disconnect(origin);
  sim.settle();
  EXPECT_EQ(sim.written(origin.id), message_line(x));
  EXPECT_EQ(sim.counters(0).line_oks_delivered.get(), 0U);
}

// A message a connection sent to itself is dropped when it leaves, not handed on: OriginGone is
// posted before TargetGone to every shard.
TEST(LineService, SelfAddressedMessageOfADepartedConnectionIsNotReforwarded) {
  Simulator sim(2);
  LinePeer& a = sim.connect(0);
  const std::string x = x_owned_by(1, 2);
  sim.say(a, command(message_line(x)));
  sim.settle();
  ASSERT_EQ(sim.receiver_of(x), a.id);
  sim.connect(1);  // someone a re-forward could go to
  sim.disconnect(a);
  sim.settle();
  EXPECT_EQ(sim.counters(1).line_reforwards.get(), 0U);
  EXPECT_EQ(sim.service(1).pending().size(), 0U);
}

// The target leaves without answering: X's owner forwards the message again to a live connection,
// and that one's ok reaches the origin.
TEST(LineService, TargetGoneBeforeAnsweringIsForwardedAgain) {
  Simulator sim(3);
  LinePeer& origin = sim.connect(0);
  sim.connect(2);
  const std::string x = forward_to_another(sim, origin, 1, 3, "t");
  const protocol::UserId target = *sim.receiver_of(x);
  sim.connect(1);
  sim.disconnect(sim.peer(target));
  sim.settle();
  EXPECT_EQ(sim.counters(1).line_reforwards.get(), 1U);
  const std::optional<protocol::UserId> second = sim.receiver_of(x);
  ASSERT_TRUE(second);
  ASSERT_NE(*second, target);
  sim.say(sim.peer(*second), command(ok_line(x)));
  sim.settle();
  EXPECT_NE(sim.written(origin.id).find(ok_line(x)), std::string::npos);
  EXPECT_EQ(sim.service(1).pending().size(), 0U);
}

// The re-forward is on its way to a shard whose only connection leaves before it lands: that shard
// answers kLineNoTarget and X's owner picks again, until the message reaches someone. The picks are
// random: the first seed under which the re-forward heads for shard 1 sets the scene.
TEST(LineService, ReforwardToAShardThatEmptiedMeanwhileIsPickedAgain) {
  constexpr std::uint64_t kSeedsToTry = 64;  // each heads there with p = 1/2
  for (std::uint64_t seed = 0; seed < kSeedsToTry; ++seed) {
    Simulator sim(3, seed);
    LinePeer& origin = sim.connect(0);
    sim.connect(2);
    const std::string x = forward_to_another(sim, origin, 1, 3, "r");
    const protocol::UserId target = *sim.receiver_of(x);
    LinePeer& leaving = sim.connect(1);
    sim.disconnect(sim.peer(target));
    // Deliver the departure's messages, but hold the re-forward they cause.
    while (sim.deliver_first(ShardMessage::Kind::kLineOriginGone) ||
           sim.deliver_first(ShardMessage::Kind::kLineTargetGone)) {
    }
    ASSERT_EQ(sim.in_flight().size(), 1U);
    ASSERT_EQ(sim.in_flight().front().message->kind, ShardMessage::Kind::kLineForward);
    if (sim.in_flight().front().to != 1) {
      continue;  // it went to the origin's shard: not the ordering under test
    }
    sim.disconnect(leaving);
    sim.settle();
    EXPECT_EQ(sim.written(leaving.id), "");
    EXPECT_EQ(sim.receiver_of(x), origin.id);  // the one connection left
    sim.say(origin, command(ok_line(x)));
    sim.settle();
    EXPECT_NE(sim.written(origin.id).find(ok_line(x)), std::string::npos);
    EXPECT_EQ(sim.service(1).pending().size(), 0U);
    return;
  }
  FAIL() << "no seed sent the re-forward to shard 1";
}

// The origin leaves while its message is on the way to X's owner: the owner records and forwards it,
// then the departure drops it, and its ok (if its receiver answers) matches nothing.
TEST(LineService, AMessageWhoseOriginLeftOnTheWayIsDropped) {
  Simulator sim(2);
  LinePeer& origin = sim.connect(0);
  sim.connect(1);
  const std::string x = x_owned_by(1, 2);
  sim.say(origin, command(message_line(x)));
  sim.disconnect(origin);
  sim.settle();
  EXPECT_EQ(sim.service(1).pending().size(), 0U);
  EXPECT_EQ(sim.written(origin.id).find(ok_line(x)), std::string::npos);
}

// `echo "message X" | nc -N`, alone on the hub: the EOF is handled before the message has reached X's
// owner. Nobody is live when it is routed, so it goes back to its sender, which still reads.
TEST(LineService, AHalfClosedLoneSendersMessageComesBackToIt) {
  Simulator sim(2);
  LinePeer& sender = sim.connect(0);
  const std::string x = x_owned_by(1, 2);
  sim.say(sender, command(message_line(x)));
  EXPECT_TRUE(sim.half_close(sender)) << "nobody else is live";
  sim.settle();
  EXPECT_EQ(sim.written(sender.id), message_line(x));
  EXPECT_EQ(sender.line_pending_bytes, 0U) << "forwarded back to its sender: its allowance is returned";
  EXPECT_EQ(sim.service(1).pending().size(), 0U) << "dropped with its origin: nobody can answer it";
  sim.forget(sender);
}

// With someone live, a half-closed sender's message goes to them; the sender is gone as an origin
// (its pending messages are dropped, as at a disconnect), so the ok is unmatched and nothing comes back.
TEST(LineService, AHalfClosedSendersMessageGoesToALiveConnectionAndItsOkIsUnmatched) {
  Simulator sim(2);
  LinePeer& sender = sim.connect(0);
  LinePeer& live = sim.connect(1);
  const std::string x = x_owned_by(1, 2);
  sim.say(sender, command(message_line(x)));
  EXPECT_FALSE(sim.half_close(sender));
  sim.settle();
  EXPECT_EQ(sim.written(live.id), message_line(x));
  sim.say(live, command(ok_line(x)));
  sim.settle();
  EXPECT_EQ(sim.written(sender.id), "");
  EXPECT_EQ(sim.counters(1).line_unmatched_oks.get(), 1U);
  sim.forget(sender);
}

// Once it closes (forget), a message that would come back to it finds nobody and stays pending until
// its origin's departure drops it: never written to a connection that is gone.
TEST(LineService, NothingReachesAHalfClosedSenderOnceItIsForgotten) {
  Simulator sim(2);
  LinePeer& sender = sim.connect(0);
  const std::string x = x_owned_by(1, 2);
  sim.say(sender, command(message_line(x)));
  sim.half_close(sender);
  sim.forget(sender);
  sim.settle();
  EXPECT_EQ(sim.written(sender.id), "");
  EXPECT_EQ(sim.service(1).pending().size(), 0U);
}

TEST(LineService, AStoppingShardForwardsNothing) {
  Simulator sim(1);
  LinePeer& a = sim.connect(0);
  sim.service(0).stop();
  sim.say(a, command(message_line("x")));
  sim.settle();
  EXPECT_FALSE(sim.receiver_of("x"));
  EXPECT_EQ(sim.service(0).pending().size(), 1U);
}

// Unanswered messages count against the sender's allowance. Past it, while hub memory is past half the
// budget, what it sends is held back (read, not taken in); oks that bring it under half the allowance
// take the held messages in, oldest first, as far as the allowance goes, and a sender throttled for
// holding messages back is read again once it holds none.
TEST(LineService, PastTheAllowanceMessagesAreHeldBackUntilOksTakeThemIn) {
  Simulator sim(2, kSeedBase, true, kSmallAllowance);
  LinePeer& sender = sim.connect(0);
  sim.connect(1);
  sim.hold_back_lines(true);
  const std::string x1 = forward_to_another(sim, sender, 0, 2, "a");
  const std::string x2 = forward_to_another(sim, sender, 1, 2, "b");
  EXPECT_EQ(sender.line_pending_bytes, pending_cost(x1.size()) + pending_cost(x2.size()));
  ASSERT_TRUE(sim.service(0).over_allowance(sender));
  const std::uint64_t taken_in = sim.counters(0).line_messages_in.get();
  for (const std::string x : {"held-1", "held-2", "held-3"}) {
    sim.say(sender, command(message_line(x)));
  }
  EXPECT_TRUE(sim.in_flight().empty()) << "held back: nothing posted";
  EXPECT_EQ(sender.line_held_count, 3U);
  EXPECT_EQ(sim.service(0).held_messages(), 3U);
  EXPECT_GT(sim.service(0).held_bytes(), 0U);
  EXPECT_EQ(sim.counters(0).line_messages_in.get(), taken_in);
  sender.line_throttled = true;  // what the shard does past 5/8 of the budget

  sim.say(sim.peer(*sim.receiver_of(x1)), command(ok_line(x1)));
  sim.settle();
  EXPECT_EQ(sender.line_held_count, 3U) << "1 of 2 answered: still above half the allowance";
  sim.say(sim.peer(*sim.receiver_of(x2)), command(ok_line(x2)));
  sim.settle();
  EXPECT_EQ(sender.line_held_count, 1U) << "taken in as far as the allowance goes: two of them";
  EXPECT_EQ(sim.counters(0).line_messages_in.get(), taken_in + 2);
  EXPECT_TRUE(sim.resumed().empty()) << "still holding one back";
  ASSERT_TRUE(sim.receiver_of("held-1").has_value());
  ASSERT_TRUE(sim.receiver_of("held-2").has_value());
  EXPECT_FALSE(sim.receiver_of("held-3").has_value());

  sim.hold_back_lines(false);  // hub memory fell: the shard releases every connection's held messages
  sim.service(0).release_held(sender);
  sim.settle();
  EXPECT_EQ(sender.line_held_count, 0U);
  EXPECT_EQ(sim.service(0).held_messages(), 0U);
  EXPECT_EQ(sim.service(0).held_bytes(), 0U);
  EXPECT_TRUE(sim.receiver_of("held-3").has_value());
  EXPECT_FALSE(sender.line_throttled);
  EXPECT_EQ(sim.resumed(), std::vector<protocol::UserId>{sender.id});
}

// A connection that leaves drops what it held back, as its pending messages: nobody is left to answer.
TEST(LineService, AConnectionThatLeavesDropsWhatItHeldBack) {
  Simulator sim(1, kSeedBase, true, kSmallAllowance);
  LinePeer& sender = sim.connect(0);
  sim.connect(0);
  sim.hold_back_lines(true);
  forward_to_another(sim, sender, 0, 1, "a");
  forward_to_another(sim, sender, 0, 1, "b");
  sim.say(sender, command(message_line("held")));
  ASSERT_EQ(sim.service(0).held_messages(), 1U);
  sim.disconnect(sender);
  sim.settle();
  EXPECT_EQ(sim.service(0).held_messages(), 0U);
  EXPECT_EQ(sim.service(0).held_bytes(), 0U);
  EXPECT_FALSE(sim.receiver_of("held").has_value());
}

// A message forwarded back to its own sender is released from its allowance at once: its ok can only
// come after bytes the sender has yet to have read.
TEST(LineService, AMessageForwardedToItsSenderLeavesItsAllowance) {
  Simulator sim(1);
  LinePeer& a = sim.connect(0);
  sim.say(a, command(message_line("self")));
  sim.settle();
  ASSERT_EQ(sim.receiver_of("self"), a.id);
  EXPECT_EQ(a.line_pending_bytes, 0U);
  sim.say(a, command(ok_line("self")));
  sim.settle();
  EXPECT_EQ(sim.written(a.id), message_line("self") + ok_line("self"));
  EXPECT_EQ(a.line_pending_bytes, 0U);
}

}  // namespace
}  // namespace ringhub
