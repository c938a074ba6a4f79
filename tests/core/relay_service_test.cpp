// Tests for core/relay_service without rings or sockets: N RelayServices joined by a single-threaded
// simulator that holds every posted message until the test delivers it, in the order the test
// chooses, and a fake seam whose queues hold the very blocks the service shares. So LIST gathers,
// maybe-tallies, departures while a message is on its way and the one-copy fan-out are deterministic.
#include "core/relay_service.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/client_frame_reader.hpp"
#include "core/frame_codec.hpp"

namespace ringhub {
namespace {

using protocol::UserId;

// Large enough that no two ids of a test share a slot, unless the test makes them.
constexpr std::size_t kDirectorySlots = 1024;
// The hub's default batch threshold: relays up to this size to a few receivers go to each on its own.
constexpr std::uint32_t kSmallFrameBytes = 4096;
// The directory's smallest table: ids this far apart share a slot.
constexpr UserId kSmallDirectorySlots = 64;

// One frame a peer read, decoded by the client library's reader.
struct Received {
  enum class Kind : std::uint8_t { kIdentity, kList, kDeliver } kind;
  UserId id = 0;  // IDENTITY's id, DELIVER's sender
  std::vector<UserId> ids;
  std::string body;
};

struct Collector {
  void on_identity_reply(UserId id) { frames.push_back({Received::Kind::kIdentity, id, {}, {}}); }
  void on_list_reply(std::span<const UserId> ids) {
    frames.push_back({Received::Kind::kList, 0, {ids.begin(), ids.end()}, {}});
  }
  void on_deliver_begin(UserId sender, std::uint32_t) {
    frames.push_back({Received::Kind::kDeliver, sender, {}, {}});
  }
  void on_deliver_bytes(std::span<const std::uint8_t> bytes) {
    frames.back().body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  void on_deliver_end() {}
  void on_error(std::uint8_t, std::string_view) { ADD_FAILURE() << "the relay service sent an ERROR"; }
  std::vector<Received> frames;
};

// N shards' RelayServices, their seams' queues and the messages in flight between them.
class Simulator {
 public:
  struct Posted {
    unsigned to = 0;
    ShardMessage* message = nullptr;
  };

  explicit Simulator(unsigned shards, std::size_t directory_slots = kDirectorySlots)
      : directory_(directory_slots) {
    for (unsigned i = 0; i < shards; ++i) {
      shards_.push_back(std::make_unique<ShardSim>(*this, i));
    }
    for (unsigned i = 0; i < shards; ++i) {
      ShardSim& shard = *shards_[i];
      shard.service = std::make_unique<RelayService>(
          RelayServiceConfig{.shard_index = i, .shard_count = shards, .small_frame_bytes = kSmallFrameBytes},
          &directory_, shard, shard.memory, shard.counters);
    }
  }
  ~Simulator() {
    queues_.clear();  // releases the shared blocks, which may post the last kRelayDone messages
    for (Posted& posted : in_flight_) {
      delete posted.message;
    }
  }

  RelayService& service(unsigned shard) { return *shards_.at(shard)->service; }
  ShardCounters& counters(unsigned shard) { return shards_.at(shard)->counters; }

  RelayPeer& connect(unsigned shard) {
    peers_.push_back(std::make_unique<RelayPeer>());
    RelayPeer& peer = *peers_.back();
    peer.id = ++last_id_;
    shard_of_[peer.id] = shard;
    service(shard).add(peer);
    return peer;
  }
  void skip_ids(UserId count) { last_id_ += count; }
  void disconnect(RelayPeer& peer) {
    closing_.insert(peer.id);
    service(shard_of_.at(peer.id)).remove(peer);
    queues_.erase(peer.id);
  }
  // From now on `peer` takes what is queued for it into a send batch at once (RelaySeam::sends_at_once).
  void sends_at_once(const RelayPeer& peer) { at_once_.insert(peer.id); }
  // The peer is being closed but not yet gone (what a gather may find when it finishes).
  void start_closing(const RelayPeer& peer) { closing_.insert(peer.id); }
  unsigned holds(const RelayPeer& peer) const {
    auto it = holds_.find(peer.id);
    return it == holds_.end() ? 0 : it->second;
  }

  // A client frame from `peer`; `own_block` as the assembler would say (false: it lies in a receive
  // buffer, which the service must copy out of before it returns).
  void send(RelayPeer& peer, std::vector<std::uint8_t> bytes, bool own_block = false) {
    FrameView frame;
    frame.header = codec::decode_header(
        std::span<const std::uint8_t, protocol::kHeaderSize>(bytes.data(), protocol::kHeaderSize));
    frame.block = HeapBlock::create(static_cast<std::uint32_t>(bytes.size()), &frame_memory_);
    std::memcpy(frame.block.data(), bytes.data(), bytes.size());
    frame.own_block = own_block;
    service(shard_of_.at(peer.id)).on_frame(peer, frame);
  }
  void identity(RelayPeer& peer) {
    std::vector<std::uint8_t> bytes;
    codec::append_identity_request(bytes);
    send(peer, std::move(bytes));
  }
  void list(RelayPeer& peer) {
    std::vector<std::uint8_t> bytes;
    codec::append_list_request(bytes);
    send(peer, std::move(bytes));
  }
  void relay(RelayPeer& peer, const std::vector<UserId>& receivers, std::string_view body,
             bool own_block = false) {
    std::vector<std::uint8_t> bytes;
    codec::append_relay(
        bytes, receivers,
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(body.data()), body.size()));
    send(peer, std::move(bytes), own_block);
  }

  std::deque<Posted>& in_flight() { return in_flight_; }
  void deliver(std::size_t index) {
    const Posted posted = in_flight_.at(index);
    in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(index));
    service(posted.to).on_message(posted.message);
  }
  std::size_t count_in_flight(ShardMessage::Kind kind) const {
    return static_cast<std::size_t>(std::count_if(in_flight_.begin(), in_flight_.end(),
                                                  [&](const Posted& p) { return p.message->kind == kind; }));
  }
  void settle() {
    while (!in_flight_.empty()) {
      deliver(0);
    }
  }

  // What `peer` can read now, in queue order: up to the first reply place still unfilled. Reading
  // drops the queue's references to the shared blocks, as a completed send does.
  std::vector<Received> read(const RelayPeer& peer) {
    std::vector<std::uint8_t> bytes;
    std::deque<QueueItem>& queue = queues_[peer.id];
    while (!queue.empty() && queue.front().block) {
      const QueueItem& item = queue.front();
      bytes.insert(bytes.end(), item.block.data() + item.offset,
                   item.block.data() + item.offset + item.length);
      queue.pop_front();
    }
    Collector collector;
    EXPECT_FALSE(readers_[peer.id].feed(bytes, collector));
    return collector.frames;
  }
  // Every block queued to `peer` (filled places included), for identity checks.
  std::vector<const std::uint8_t*> queued_data(const RelayPeer& peer) {
    std::vector<const std::uint8_t*> data;
    for (const QueueItem& item : queues_[peer.id]) {
      data.push_back(item.block ? item.block.data() + item.offset : nullptr);
    }
    return data;
  }
  // Copies the seam was asked for, by reason.
  unsigned copies(CopyReason reason) const { return copies_.count(reason) ? copies_.at(reason) : 0; }
  // Bytes charged by the services (messages, gathers, tallies, copies) over every shard.
  std::int64_t memory_in_use() const {
    std::int64_t sum = 0;
    for (const auto& shard : shards_) {
      sum += shard->memory.bytes();
    }
    return sum;
  }

 private:
  struct QueueItem {
    BlockRef block;  // empty: a reply place not yet filled
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    std::uint32_t token = 0;
  };

  struct ShardSim final : RelaySeam {
    ShardSim(Simulator& sim, unsigned index) : sim(sim), index(index) {}
    void send(RelayPeer& peer, const BlockRef& block, std::uint32_t offset, std::uint32_t length) override {
      if (!sim.closing_.count(peer.id)) {
        sim.queues_[peer.id].push_back({block, offset, length, 0});
      }
    }
    BlockRef copy(std::span<const std::uint8_t> bytes, CopyReason reason) override {
      ++sim.copies_[reason];
      BlockRef block = HeapBlock::create(static_cast<std::uint32_t>(bytes.size()), &memory);
      std::memcpy(block.data(), bytes.data(), bytes.size());
      return block;
    }
    bool send_copy(RelayPeer& peer, std::span<const std::uint8_t> bytes, CopyReason reason) override {
      const BlockRef block = copy(bytes, reason);
      send(peer, block, 0, static_cast<std::uint32_t>(bytes.size()));
      return true;
    }
    ReplySlot hold_reply(RelayPeer& peer) override {
      const std::uint32_t token = ++sim.next_token_;
      std::deque<QueueItem>& queue = sim.queues_[peer.id];
      queue.push_back({BlockRef(), 0, 0, token});
      return {queue.size() - 1, token};
    }
    void fill_replies(RelayPeer& peer, std::span<const ReplySlot> slots, const BlockRef& block,
                      std::uint32_t length) override {
      for (const ReplySlot& slot : slots) {
        for (QueueItem& item : sim.queues_[peer.id]) {
          if (!item.block && item.token == slot.token) {
            item = {block, 0, length, slot.token};
          }
        }
      }
    }
    bool closing(const RelayPeer& peer) const override { return sim.closing_.count(peer.id) != 0; }
    bool sends_at_once(const RelayPeer& peer, std::uint32_t) const override {
      return sim.at_once_.count(peer.id) != 0;
    }
    void hold(RelayPeer& peer) override { ++sim.holds_[peer.id]; }
    void release(RelayPeer& peer) override {
      EXPECT_GT(sim.holds_[peer.id], 0U);
      --sim.holds_[peer.id];
    }
    void out_of_memory(RelayPeer&, std::string_view what) override {
      ADD_FAILURE() << "out of memory: " << what;
    }
    void post(unsigned target, ShardMessage* message) override {
      EXPECT_NE(target, index);
      memory.recharge(message->charged_bytes, message_footprint(*message));
      sim.in_flight_.push_back({target, message});
    }

    Simulator& sim;
    unsigned index;
    MemoryAccount memory;
    ShardCounters counters;
    std::unique_ptr<RelayService> service;
  };

  IdDirectory directory_;
  MemoryAccount frame_memory_;  // the frames the test sends, as receive buffers would hold them
  std::vector<std::unique_ptr<ShardSim>> shards_;
  std::vector<std::unique_ptr<RelayPeer>> peers_;
  std::map<UserId, unsigned> shard_of_;
  std::set<UserId> closing_;
  std::set<UserId> at_once_;
  std::map<UserId, unsigned> holds_;
  std::map<CopyReason, unsigned> copies_;
  std::map<UserId, std::deque<QueueItem>> queues_;
  std::map<UserId, ClientFrameReader> readers_;
  std::deque<Posted> in_flight_;
  std::uint32_t next_token_ = 0;
  UserId last_id_ = 0;
};

std::vector<UserId> ids_of(std::initializer_list<const RelayPeer*> peers) {
  std::vector<UserId> ids;
  for (const RelayPeer* peer : peers) {
    ids.push_back(peer->id);
  }
  return ids;
}

TEST(RelayService, IdentityAnswersThePeersOwnId) {
  Simulator sim(1);
  sim.connect(0);
  RelayPeer& b = sim.connect(0);
  sim.identity(b);
  const std::vector<Received> got = sim.read(b);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].kind, Received::Kind::kIdentity);
  EXPECT_EQ(got[0].id, b.id);
  EXPECT_EQ(sim.copies(CopyReason::kReply), 1U);
}

TEST(RelayService, ListOnOneShardNamesEveryOtherPeerAscending) {
  Simulator sim(1);
  const RelayPeer& a = sim.connect(0);
  RelayPeer& b = sim.connect(0);
  const RelayPeer& c = sim.connect(0);
  sim.list(b);
  EXPECT_TRUE(sim.in_flight().empty());
  const std::vector<Received> got = sim.read(b);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].ids, ids_of({&a, &c}));
}

TEST(RelayService, ListOnSeveralShardsIsAnsweredOnceEveryShardHasGivenItsPart) {
  Simulator sim(3);
  RelayPeer& asker = sim.connect(1);
  const RelayPeer& a = sim.connect(0);
  const RelayPeer& b = sim.connect(2);
  const RelayPeer& c = sim.connect(1);
  sim.list(asker);
  EXPECT_EQ(sim.count_in_flight(ShardMessage::Kind::kListQuery), 2U);
  EXPECT_EQ(sim.holds(asker), 1U);
  // Answers come back in the reverse of the order asked: the reply still waits for both.
  sim.deliver(1);
  sim.deliver(1);  // shard 2's part, back to shard 1
  EXPECT_TRUE(sim.read(asker).empty());
  sim.settle();
  const std::vector<Received> got = sim.read(asker);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].ids, ids_of({&a, &b, &c}));
  EXPECT_EQ(sim.holds(asker), 0U);
  EXPECT_EQ(sim.service(1).awaiting_replies(), 0U);
  EXPECT_EQ(sim.memory_in_use(), 0);
}

TEST(RelayService, AReplyHeldForAGatherKeepsItsPlaceBeforeLaterDeliveries) {
  Simulator sim(2);
  RelayPeer& asker = sim.connect(0);
  RelayPeer& neighbour = sim.connect(0);
  const RelayPeer& far = sim.connect(1);
  sim.list(asker);
  sim.relay(neighbour, {asker.id}, "after the list");
  EXPECT_TRUE(sim.read(asker).empty()) << "the DELIVER must not overtake the LIST reply before it";
  sim.settle();
  const std::vector<Received> got = sim.read(asker);
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].kind, Received::Kind::kList);
  EXPECT_EQ(got[0].ids, ids_of({&neighbour, &far}));
  EXPECT_EQ(got[1].kind, Received::Kind::kDeliver);
  EXPECT_EQ(got[1].body, "after the list");
}

TEST(RelayService, PipelinedListsShareTwoGathersAndEachSeesWhoCameBeforeIt) {
  Simulator sim(2);
  RelayPeer& asker = sim.connect(0);
  const RelayPeer& early = sim.connect(1);
  sim.list(asker);
  const RelayPeer& late = sim.connect(1);  // after the first LIST, before the next two
  sim.list(asker);
  sim.list(asker);
  // One gather asks; the two later LISTs wait together for the next one.
  EXPECT_EQ(sim.count_in_flight(ShardMessage::Kind::kListQuery), 1U);
  EXPECT_EQ(sim.holds(asker), 2U);
  sim.deliver(0);  // the query reaches shard 1 only now, so the first answer names `late` too
  sim.deliver(0);
  EXPECT_EQ(sim.count_in_flight(ShardMessage::Kind::kListQuery), 1U) << "the waiting gather now asks";
  sim.settle();
  const std::vector<Received> got = sim.read(asker);
  ASSERT_EQ(got.size(), 3U);
  for (const Received& reply : got) {
    EXPECT_EQ(reply.kind, Received::Kind::kList);
    EXPECT_EQ(reply.ids, ids_of({&early, &late}));
  }
  EXPECT_EQ(sim.copies(CopyReason::kReply), 2U) << "one reply block per gather";
  EXPECT_EQ(sim.holds(asker), 0U);
  EXPECT_EQ(sim.memory_in_use(), 0);
}

TEST(RelayService, AGatherWhoseAskerIsClosingAnswersNothingAndTheWaitingOneNeverAsks) {
  Simulator sim(2);
  RelayPeer& asker = sim.connect(0);
  sim.connect(1);
  sim.list(asker);
  sim.list(asker);
  sim.start_closing(asker);
  sim.settle();
  EXPECT_EQ(sim.count_in_flight(ShardMessage::Kind::kListQuery), 0U);
  EXPECT_EQ(sim.copies(CopyReason::kReply), 0U);
  EXPECT_EQ(sim.holds(asker), 0U) << "both gathers let the closing peer go";
  EXPECT_EQ(sim.service(0).awaiting_replies(), 0U);
  EXPECT_EQ(sim.memory_in_use(), 0);
}

TEST(RelayService, ARelayOutOfAReceiveBufferIsCopiedOnceForEveryReceiverOnEveryShard) {
  Simulator sim(3);
  RelayPeer& sender = sim.connect(0);
  constexpr unsigned kReceivers = 9;
  std::vector<const RelayPeer*> receivers;
  std::vector<UserId> ids;
  receivers.reserve(kReceivers);
  ids.reserve(kReceivers);
  for (unsigned i = 0; i < kReceivers; ++i) {
    receivers.push_back(&sim.connect(i % 3));
  }
  for (const RelayPeer* peer : receivers) {
    ids.push_back(peer->id);
  }
  sim.relay(sender, ids, "one body for all");
  sim.settle();
  EXPECT_EQ(sim.copies(CopyReason::kCopyOut), 1U);
  std::set<const std::uint8_t*> data;
  for (const RelayPeer* peer : receivers) {
    const std::vector<const std::uint8_t*> queued = sim.queued_data(*peer);
    ASSERT_EQ(queued.size(), 1U);
    data.insert(queued[0]);
  }
  EXPECT_EQ(data.size(), 1U) << "every receiver, on every shard, reads the same bytes";
  for (const RelayPeer* peer : receivers) {
    const std::vector<Received> got = sim.read(*peer);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].id, sender.id);
    EXPECT_EQ(got[0].body, "one body for all");
  }
  EXPECT_EQ(
      sim.counters(0).deliveries.get() + sim.counters(1).deliveries.get() + sim.counters(2).deliveries.get(),
      9U);
}

TEST(RelayService, ARelayInItsOwnBlockIsNeverCopied) {
  Simulator sim(2);
  RelayPeer& sender = sim.connect(0);
  const RelayPeer& near = sim.connect(0);
  const RelayPeer& far = sim.connect(1);
  sim.relay(sender, ids_of({&near, &far}), "assembled", /*own_block=*/true);
  sim.settle();
  EXPECT_EQ(sim.copies(CopyReason::kCopyOut), 0U);
  EXPECT_EQ(sim.queued_data(near), sim.queued_data(far));
  EXPECT_EQ(sim.read(far).at(0).body, "assembled");
}

// Receivers (on shard 0 unless `far`) that all take what is queued for them at once, and a sender.
struct LendingSetup {
  LendingSetup(Simulator& sim, unsigned count, bool far = false) : sender(sim.connect(0)) {
    for (unsigned i = 0; i < count; ++i) {
      RelayPeer& peer = sim.connect(far && i == count - 1 ? 1 : 0);
      sim.sends_at_once(peer);
      receivers.push_back(&peer);
      ids.push_back(peer.id);
    }
  }
  RelayPeer& sender;
  std::vector<const RelayPeer*> receivers;
  std::vector<UserId> ids;
};

TEST(RelayService, AFrameEveryReceiverBatchesAtOnceIsLentAsItLiesNotCopied) {
  Simulator sim(1);
  LendingSetup setup(sim, 3);
  sim.relay(setup.sender, setup.ids, "lent");
  EXPECT_EQ(sim.copies(CopyReason::kCopyOut), 0U);
  EXPECT_EQ(sim.copies(CopyReason::kBatch), 0U);
  EXPECT_EQ(sim.counters(0).lent_frames.get(), 1U);
  EXPECT_EQ(sim.queued_data(*setup.receivers[0]), sim.queued_data(*setup.receivers[2]));
  for (const RelayPeer* peer : setup.receivers) {
    EXPECT_EQ(sim.read(*peer).at(0).body, "lent");
  }
}

TEST(RelayService, ASmallFrameIsCopiedOnlyForTheReceiverThatCannotBatchItAtOnce) {
  Simulator sim(1);
  LendingSetup setup(sim, 3);
  const RelayPeer& busy = sim.connect(0);  // a send in flight: it cannot take the frame this iteration
  std::vector<UserId> ids = setup.ids;
  ids.push_back(busy.id);
  sim.relay(setup.sender, ids, "copied for one");
  EXPECT_EQ(sim.copies(CopyReason::kCopyOut), 0U) << "no shared copy of a small frame for a few receivers";
  EXPECT_EQ(sim.copies(CopyReason::kBatch), 1U);
  EXPECT_NE(sim.queued_data(busy), sim.queued_data(*setup.receivers[0]));
  EXPECT_EQ(sim.queued_data(*setup.receivers[0]), sim.queued_data(*setup.receivers[2]));
  EXPECT_EQ(sim.counters(0).lent_frames.get(), 0U);
  EXPECT_EQ(sim.counters(0).deliveries.get(), 4U);
  EXPECT_EQ(sim.read(busy).at(0).body, "copied for one");
  for (const RelayPeer* peer : setup.receivers) {
    EXPECT_EQ(sim.read(*peer).at(0).body, "copied for one");
  }
}

TEST(RelayService, AFrameAboveTheBatchThresholdIsCopiedOutOnceEvenForOneReceiver) {
  Simulator sim(1);
  RelayPeer& sender = sim.connect(0);
  const RelayPeer& busy = sim.connect(0);
  const RelayPeer& other = sim.connect(0);
  const std::string body(kSmallFrameBytes, 'b');
  sim.relay(sender, ids_of({&busy, &other}), body);
  EXPECT_EQ(sim.copies(CopyReason::kCopyOut), 1U);
  EXPECT_EQ(sim.copies(CopyReason::kBatch), 0U);
  EXPECT_EQ(sim.queued_data(busy), sim.queued_data(other));
  EXPECT_EQ(sim.read(busy).at(0).body, body);
}

TEST(RelayService, AFrameIsNotLentToManyReceiversOrAcrossShards) {
  Simulator many(1);
  LendingSetup crowd(many, 5);
  many.relay(crowd.sender, crowd.ids, "to many");
  EXPECT_EQ(many.copies(CopyReason::kCopyOut), 1U);

  Simulator two(2);
  LendingSetup spread(two, 2, /*far=*/true);
  two.relay(spread.sender, spread.ids, "to another shard");
  two.settle();
  EXPECT_EQ(two.copies(CopyReason::kCopyOut), 1U);
  EXPECT_EQ(two.read(*spread.receivers[1]).at(0).body, "to another shard");
}

TEST(RelayService, TheOriginHearsBackOnlyWhenTheLastRemoteReceiverHasReadTheBody) {
  Simulator sim(2);
  RelayPeer& sender = sim.connect(0);
  const RelayPeer& first = sim.connect(1);
  const RelayPeer& second = sim.connect(1);
  sim.relay(sender, ids_of({&first, &second}), "held until read");
  EXPECT_EQ(sim.service(0).awaiting_replies(), 1U);
  sim.settle();  // the relay reaches shard 1 and is queued to both
  EXPECT_EQ(sim.in_flight().size(), 0U);
  sim.read(first);
  EXPECT_EQ(sim.in_flight().size(), 0U) << "`second` still holds the bytes";
  sim.read(second);
  ASSERT_EQ(sim.count_in_flight(ShardMessage::Kind::kRelayDone), 1U);
  sim.settle();
  EXPECT_EQ(sim.service(0).awaiting_replies(), 0U);
  EXPECT_EQ(sim.memory_in_use(), 0);
}

TEST(RelayService, AReceiverThatLeftBeforeTheRelayArrivedIsSkippedAndTheRelayStillComesHome) {
  Simulator sim(2);
  RelayPeer& sender = sim.connect(0);
  RelayPeer& leaving = sim.connect(1);
  const RelayPeer& staying = sim.connect(1);
  sim.relay(sender, ids_of({&leaving, &staying}), "body");
  sim.disconnect(leaving);
  sim.settle();
  EXPECT_EQ(sim.counters(1).skipped_receivers.get(), 1U);
  EXPECT_EQ(sim.counters(1).deliveries.get(), 1U);
  sim.read(staying);
  sim.settle();
  EXPECT_EQ(sim.service(0).awaiting_replies(), 0U);
  EXPECT_EQ(sim.memory_in_use(), 0);
}

// Ids 64 apart share a slot of the smallest directory. The newest id there is exact; the one it
// displaced, and any other id of that slot, are "ask every shard". A receiver nobody has is then
// counted skipped exactly once, whatever order the shards' answers come back in.
class MaybeTallyOrder : public ::testing::TestWithParam<bool> {};

TEST_P(MaybeTallyOrder, AnIdNobodyHasIsSkippedOnceAndAnIdSomebodyHasIsDeliveredOnce) {
  Simulator sim(3, kSmallDirectorySlots);
  const RelayPeer& displaced = sim.connect(1);
  RelayPeer& sender = sim.connect(0);
  sim.skip_ids(kSmallDirectorySlots - 2);
  const RelayPeer& holder = sim.connect(2);
  ASSERT_EQ(holder.id, displaced.id + kSmallDirectorySlots);
  const UserId nobody = holder.id + kSmallDirectorySlots;  // the same slot, never connected
  sim.relay(sender, {displaced.id, nobody}, "maybe");
  EXPECT_EQ(sim.count_in_flight(ShardMessage::Kind::kRelay), 2U) << "both other shards are asked";
  sim.deliver(0);
  sim.deliver(0);
  sim.read(displaced);
  ASSERT_EQ(sim.count_in_flight(ShardMessage::Kind::kRelayDone), 2U);
  if (GetParam()) {
    std::swap(sim.in_flight()[0], sim.in_flight()[1]);
  }
  sim.settle();
  std::uint64_t skipped = 0;
  std::uint64_t delivered = 0;
  for (unsigned s = 0; s < 3; ++s) {
    skipped += sim.counters(s).skipped_receivers.get();
    delivered += sim.counters(s).deliveries.get();
  }
  EXPECT_EQ(skipped, 1U);
  EXPECT_EQ(delivered, 1U);
  EXPECT_EQ(sim.service(0).awaiting_replies(), 0U);
  EXPECT_EQ(sim.memory_in_use(), 0);
}

INSTANTIATE_TEST_SUITE_P(AnswersInEitherOrder, MaybeTallyOrder, ::testing::Bool());

TEST(RelayService, ARelayToNobodyLiveCopiesNothing) {
  Simulator sim(2);
  RelayPeer& sender = sim.connect(0);
  sim.relay(sender, {sender.id, 999}, "to nobody");
  EXPECT_TRUE(sim.in_flight().empty());
  EXPECT_EQ(sim.copies(CopyReason::kCopyOut), 0U);
  EXPECT_EQ(sim.counters(0).skipped_receivers.get(), 2U);
}

}  // namespace
}  // namespace ringhub
