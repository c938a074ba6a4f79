// Hub integration tests for the relay path: ids, LIST, reply order, RELAY fan-out and per-pair order,
// zero copy, thousands of clients, send_zc, stop and start-up failures. Most run on 1 and on 3 shards,
// since cross-shard relays and LISTs travel through MSG_RING messages instead of the local path.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/frame_codec.hpp"
#include "tests/transport/hub_fixture.hpp"

namespace ringhub::testing {
namespace {

using client::Frame;
using client::RelayClient;
using protocol::FrameType;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;

// How long a test waits for one frame before it fails: a failure bound, never a delay.
constexpr std::chrono::milliseconds kFrameTimeout = std::chrono::seconds(20);

Bytes random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  Bytes out(n);
  for (auto& b : out) {
    b = static_cast<std::uint8_t>(gen());
  }
  return out;
}

Bytes identity_request() {
  Bytes out;
  codec::append_identity_request(out);
  return out;
}

Bytes list_request() {
  Bytes out;
  codec::append_list_request(out);
  return out;
}

Bytes relay_frame(std::span<const UserId> receivers, std::span<const std::uint8_t> body) {
  Bytes out;
  codec::append_relay(out, receivers, body);
  return out;
}

// A body that carries a sequence number (and, optionally, filler so frames straddle buffers).
Bytes numbered_body(std::uint64_t seq, std::size_t size = sizeof(std::uint64_t)) {
  Bytes out(std::max(size, sizeof seq), static_cast<std::uint8_t>(seq));
  codec::store_u64(out.data(), seq);
  return out;
}

std::vector<UserId> ids_of_frame(const Frame& frame) {
  std::vector<UserId> ids(frame.payload.size() / protocol::kIdSize);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ids[i] = codec::load_u64(frame.payload.data() + i * protocol::kIdSize);
  }
  return ids;
}

// The next frame on the wire must be a DELIVER of `body` from `sender`.
::testing::AssertionResult next_is_delivery(RelayClient& receiver, UserId sender, const Bytes& body) {
  Result<Frame> frame = receiver.read_frame(kFrameTimeout);
  if (!frame) {
    return ::testing::AssertionFailure() << "no DELIVER: " << frame.error().message;
  }
  if (frame->header.type != FrameType::kDeliver) {
    return ::testing::AssertionFailure()
           << "frame type 0x" << std::hex << static_cast<unsigned>(frame->header.type)
           << " instead of DELIVER";
  }
  if (frame->header.length != protocol::kIdSize + body.size() || frame->payload.size() < protocol::kIdSize) {
    return ::testing::AssertionFailure()
           << "DELIVER length " << frame->header.length << ", expected " << protocol::kIdSize + body.size();
  }
  const UserId from = codec::load_u64(frame->payload.data());
  if (from != sender) {
    return ::testing::AssertionFailure() << "DELIVER from " << from << ", expected " << sender;
  }
  if (!std::equal(body.begin(), body.end(), frame->payload.begin() + protocol::kIdSize)) {
    return ::testing::AssertionFailure() << "DELIVER body differs from the relayed body";
  }
  return ::testing::AssertionSuccess();
}

// Nothing is queued for `peer`: an IDENTITY sent now is answered by the very next frame. Replies and
// deliveries share one ordered queue per connection, so a stray DELIVER would come first.
template <typename Client>  // RelayClient or SocketRelayClient
::testing::AssertionResult nothing_pending(Client& peer, UserId id) {
  if (Result<void> sent = peer.send_raw(identity_request()); !sent) {
    return ::testing::AssertionFailure() << "cannot send IDENTITY: " << sent.error().message;
  }
  Result<Frame> frame = peer.read_frame(kFrameTimeout);
  if (!frame) {
    return ::testing::AssertionFailure() << "no reply: " << frame.error().message;
  }
  if (frame->header.type != FrameType::kIdentityReply) {
    return ::testing::AssertionFailure()
           << "frame type 0x" << std::hex << static_cast<unsigned>(frame->header.type)
           << " before the IDENTITY_REPLY";
  }
  if (frame->payload.size() != protocol::kIdSize || codec::load_u64(frame->payload.data()) != id) {
    return ::testing::AssertionFailure() << "IDENTITY_REPLY does not carry id " << id;
  }
  return ::testing::AssertionSuccess();
}

// Every shard has finished with what `peer` sent before: LIST is gathered from every shard, and one
// shard's messages to another are handled in order, so the reply comes after their share of earlier
// relays (and after the counters they touched). On one shard, replies simply follow the relays.
::testing::AssertionResult shards_caught_up(RelayClient& peer) {
  Result<std::vector<UserId>> listed = peer.list(kFrameTimeout);
  if (!listed) {
    return ::testing::AssertionFailure() << "LIST failed: " << listed.error().message;
  }
  return ::testing::AssertionSuccess();
}

class RelayFixture : public HubTest {
 protected:
  // Connects `n` clients, then asks every id at once (pipelined), so thousands take few round trips.
  std::vector<Peer> connect_many(std::size_t n) {
    std::vector<Peer> peers;
    peers.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      peers.push_back(Peer{connect(), 0});
    }
    const Bytes ask = identity_request();
    for (Peer& p : peers) {
      EXPECT_TRUE(p.client.send_raw(ask).ok());
    }
    for (Peer& p : peers) {
      Result<Frame> reply = p.client.read_frame(kFrameTimeout);
      if (reply && reply->header.type == FrameType::kIdentityReply && reply->payload.size() == 8) {
        p.id = codec::load_u64(reply->payload.data());
      } else {
        ADD_FAILURE() << "no IDENTITY_REPLY: " << (reply ? "wrong frame" : reply.error().message);
      }
    }
    return peers;
  }

  // The peers' ids, ascending, leaving out peers[skip] (LIST's view from that peer).
  static std::vector<UserId> ids_except(const std::vector<Peer>& peers, std::size_t skip) {
    std::vector<UserId> ids;
    for (std::size_t i = 0; i < peers.size(); ++i) {
      if (i != skip) {
        ids.push_back(peers[i].id);
      }
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }
  static std::vector<UserId> ids_of(const std::vector<Peer>& peers) {
    return ids_except(peers, peers.size());
  }
};

// Parameter: the shard count.
class HubRelayTest : public RelayFixture, public ::testing::WithParamInterface<unsigned> {
 protected:
  void start() { start_hub(test_config(GetParam())); }
};

INSTANTIATE_TEST_SUITE_P(Shards, HubRelayTest, ::testing::Values(1U, 3U),
                         [](const ::testing::TestParamInfo<unsigned>& info) {
                           return info.param == 1 ? std::string("OneShard") : std::string("ThreeShards");
                         });

TEST_P(HubRelayTest, IdsIncreaseInConnectOrderFromOne) {
  start();
  for (UserId expected = 1; expected <= 12; ++expected) {
    Peer p = connect_peer();  // identity answered before the next connect
    EXPECT_EQ(p.id, expected);
  }
}

TEST_P(HubRelayTest, ListExcludesRequesterAndIsAscending) {
  start();
  std::vector<Peer> peers;
  peers.reserve(6);
  for (int i = 0; i < 6; ++i) {
    peers.push_back(connect_peer());
  }
  for (std::size_t i = 0; i < peers.size(); ++i) {
    Result<std::vector<UserId>> listed = peers[i].client.list();
    ASSERT_TRUE(listed.ok()) << listed.error().message;
    EXPECT_EQ(*listed, ids_except(peers, i)) << "asked by peer " << i;
  }
}

TEST_P(HubRelayTest, ListEventuallyDropsClosedClient) {
  start();
  std::vector<Peer> peers;
  peers.reserve(4);
  for (int i = 0; i < 4; ++i) {
    peers.push_back(connect_peer());
  }
  const UserId gone = peers[2].id;
  peers[2].client.close();
  std::vector<UserId> last;
  EXPECT_TRUE(eventually([&] {
    Result<std::vector<UserId>> listed = peers[0].client.list();
    last = listed ? *listed : std::vector<UserId>{};
    return listed.ok() && std::find(last.begin(), last.end(), gone) == last.end();
  }));
  EXPECT_EQ(last, (std::vector<UserId>{peers[1].id, peers[3].id}));
}

TEST_P(HubRelayTest, ListReturnsMoreThan255Ids) {
  start();
  std::vector<Peer> peers = connect_many(300);
  Result<std::vector<UserId>> listed = peers[150].client.list();
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(listed->size(), 299U);
  EXPECT_EQ(*listed, ids_except(peers, 150));
}

// On several shards the LIST reply is gathered and holds its place in the queue with a placeholder;
// the IDENTITY_REPLY queued after it must not overtake it.
TEST_P(HubRelayTest, PipelinedRepliesKeepRequestOrder) {
  start();
  std::vector<Peer> others = connect_many(5);
  Peer asker = connect_peer();
  Bytes requests = identity_request();
  const Bytes list = list_request();
  requests.insert(requests.end(), list.begin(), list.end());
  const Bytes identity = identity_request();
  requests.insert(requests.end(), identity.begin(), identity.end());
  ASSERT_TRUE(asker.client.send_raw(requests).ok());

  const FrameType expected[] = {FrameType::kIdentityReply, FrameType::kListReply, FrameType::kIdentityReply};
  for (const FrameType type : expected) {
    Result<Frame> frame = asker.client.read_frame(kFrameTimeout);
    ASSERT_TRUE(frame.ok()) << frame.error().message;
    ASSERT_EQ(static_cast<unsigned>(frame->header.type), static_cast<unsigned>(type));
    if (type == FrameType::kListReply) {
      EXPECT_EQ(ids_of_frame(*frame), ids_of(others));
    } else {
      EXPECT_EQ(ids_of_frame(*frame), std::vector<UserId>{asker.id});
    }
  }
}

// Thousands of IDENTITY and LIST pairs in one write, from a client that reads every reply: on several
// shards each LIST holds a placeholder while it is gathered, and every reply must still come, in
// order, with no ERROR. The queue once gave each small reply a block sized to the whole queue, left
// behind by the placeholder after it, and cut such a client as a slow consumer after 2,400 pairs.
TEST_P(HubRelayTest, ThousandsOfPipelinedIdentityAndListPairsAreAllAnswered) {
  start();
  std::vector<Peer> others = connect_many(3);
  Peer asker = connect_peer();
  constexpr int kPairs = 5000;
  Bytes pair = identity_request();
  const Bytes list = list_request();
  pair.insert(pair.end(), list.begin(), list.end());
  Bytes requests;
  for (int i = 0; i < kPairs; ++i) {
    requests.insert(requests.end(), pair.begin(), pair.end());
  }
  ASSERT_TRUE(asker.client.send_raw(requests).ok());  // 80 KB: the hub reads it while we wait below

  for (int i = 0; i < kPairs; ++i) {
    for (const FrameType type : {FrameType::kIdentityReply, FrameType::kListReply}) {
      Result<Frame> frame = asker.client.read_frame(kFrameTimeout);
      ASSERT_TRUE(frame.ok()) << "pair " << i << ": " << frame.error().message;
      ASSERT_EQ(static_cast<unsigned>(frame->header.type), static_cast<unsigned>(type)) << "pair " << i;
      if (type == FrameType::kListReply) {
        ASSERT_EQ(ids_of_frame(*frame), ids_of(others)) << "pair " << i;
      }
    }
  }
  EXPECT_EQ(stats().slow_consumer_closes, 0U);
}

TEST_P(HubRelayTest, RelayToOneSixteenAnd255ReceiversDeliversOnceEach) {
  start();
  std::vector<Peer> peers = connect_many(256);
  Peer& sender = peers[0];
  std::uint64_t deliveries = 0;
  for (const std::size_t fanout : {std::size_t{1}, std::size_t{16}, std::size_t{255}}) {
    std::vector<UserId> receivers;
    for (std::size_t i = 1; i <= fanout; ++i) {
      receivers.push_back(peers[i].id);
    }
    const Bytes body = bytes_of("fan-out to " + std::to_string(fanout));
    ASSERT_TRUE(sender.client.relay(receivers, body).ok());
    for (std::size_t i = 1; i <= fanout; ++i) {
      ASSERT_TRUE(next_is_delivery(peers[i].client, sender.id, body)) << "receiver " << i;
    }
    EXPECT_TRUE(nothing_pending(sender.client, sender.id)) << "the sender got its own relay";
    deliveries += fanout;
  }
  for (std::size_t i = 1; i < peers.size(); ++i) {
    EXPECT_TRUE(nothing_pending(peers[i].client, peers[i].id)) << "receiver " << i << " got a duplicate";
  }
  ASSERT_TRUE(shards_caught_up(sender.client));
  EXPECT_EQ(stats().deliveries, deliveries);
  EXPECT_EQ(stats().skipped_receivers, 0U);
}

TEST_P(HubRelayTest, MaxBodyArrivesByteExact) {
  start();
  std::vector<Peer> peers = connect_many(5);
  const Bytes body = random_bytes(protocol::kMaxBodySize, 42);
  const std::vector<UserId> receivers = ids_except(peers, 0);
  ASSERT_TRUE(peers[0].client.relay(receivers, body).ok());
  for (std::size_t i = 1; i < peers.size(); ++i) {
    EXPECT_TRUE(next_is_delivery(peers[i].client, peers[0].id, body)) << "receiver " << i;
  }
}

TEST_P(HubRelayTest, EmptyBodyIsDeliveredAsSenderIdOnly) {
  start();
  Peer sender = connect_peer();
  Peer receiver = connect_peer();
  ASSERT_TRUE(sender.client.relay(std::vector<UserId>{receiver.id}, {}).ok());
  Result<Frame> frame = receiver.client.read_frame(kFrameTimeout);
  ASSERT_TRUE(frame.ok()) << frame.error().message;
  EXPECT_EQ(frame->header.type, FrameType::kDeliver);
  EXPECT_EQ(frame->header.length, 8U);
  EXPECT_EQ(ids_of_frame(*frame), std::vector<UserId>{sender.id});
}

TEST_P(HubRelayTest, DuplicateSelfAndUnknownReceiversAreSkipped) {
  start();
  Peer sender = connect_peer();
  Peer b = connect_peer();
  Peer c = connect_peer();
  const HubStats before = stats();
  // b three times (2 duplicates), the sender (1), an unknown id (1): 4 skipped, 2 delivered.
  const std::vector<UserId> receivers{b.id, b.id, sender.id, 999'999, c.id, b.id};
  const Bytes body = bytes_of("dedupe");
  ASSERT_TRUE(sender.client.relay(receivers, body).ok());
  EXPECT_TRUE(next_is_delivery(b.client, sender.id, body));
  EXPECT_TRUE(next_is_delivery(c.client, sender.id, body));
  EXPECT_TRUE(nothing_pending(b.client, b.id));
  EXPECT_TRUE(nothing_pending(c.client, c.id));
  EXPECT_TRUE(nothing_pending(sender.client, sender.id));
  ASSERT_TRUE(shards_caught_up(sender.client));
  const HubStats after = stats();
  EXPECT_EQ(after.relays - before.relays, 1U);
  EXPECT_EQ(after.deliveries - before.deliveries, 2U);
  EXPECT_EQ(after.skipped_receivers - before.skipped_receivers, 4U);
}

TEST_P(HubRelayTest, DepartedReceiverIsSkipped) {
  start();
  Peer sender = connect_peer();
  Peer stays = connect_peer();
  Peer leaves = connect_peer();
  leaves.client.close();
  ASSERT_TRUE(wait_connections(2));
  const HubStats before = stats();
  const Bytes body = bytes_of("after you left");
  ASSERT_TRUE(sender.client.relay(std::vector<UserId>{leaves.id, stays.id}, body).ok());
  EXPECT_TRUE(next_is_delivery(stays.client, sender.id, body));
  ASSERT_TRUE(shards_caught_up(sender.client));
  EXPECT_EQ(stats().skipped_receivers - before.skipped_receivers, 1U);
  EXPECT_EQ(stats().deliveries - before.deliveries, 1U);
}

TEST_P(HubRelayTest, FrameWrittenOneByteAtATimeIsRelayed) {
  start();
  Peer sender = connect_peer();
  Peer b = connect_peer();
  Peer c = connect_peer();
  const Bytes body = bytes_of("one byte per write");
  const Bytes frame = relay_frame(std::vector<UserId>{b.id, c.id}, body);
  for (const std::uint8_t byte : frame) {
    ASSERT_TRUE(sender.client.send_raw(std::span(&byte, 1)).ok());
  }
  EXPECT_TRUE(next_is_delivery(b.client, sender.id, body));
  EXPECT_TRUE(next_is_delivery(c.client, sender.id, body));
}

// 1000 frames of 116 bytes in one write: several receive buffers' worth, so some frames straddle two.
TEST_P(HubRelayTest, ThousandPipelinedRelaysArriveInOrder) {
  start();
  Peer sender = connect_peer();
  Peer receiver = connect_peer();
  constexpr std::uint64_t kFrames = 1000;
  const std::vector<UserId> to{receiver.id};
  Bytes burst;
  for (std::uint64_t seq = 0; seq < kFrames; ++seq) {
    codec::append_relay(burst, to, numbered_body(seq, 100));
  }
  ASSERT_TRUE(sender.client.send_raw(burst).ok());
  for (std::uint64_t seq = 0; seq < kFrames; ++seq) {
    ASSERT_TRUE(next_is_delivery(receiver.client, sender.id, numbered_body(seq, 100))) << "relay " << seq;
  }
}

// Reads `count` deliveries on its own thread and checks each sender's sequence numbers run 0, 1, 2...
class OrderedReader {
 public:
  OrderedReader(RelayClient& client, std::size_t count)
      : thread_([this, &client, count] { run(client, count); }) {}
  ~OrderedReader() { join(); }

  void join() {
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  const std::string& error() const { return error_; }
  const std::map<UserId, std::uint64_t>& received() const { return next_; }

 private:
  void run(RelayClient& client, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      Result<client::Delivery> d = client.next_delivery(kFrameTimeout);
      if (!d) {
        error_ = "delivery " + std::to_string(i) + ": " + d.error().message;
        return;
      }
      if (d->body.size() != sizeof(std::uint64_t)) {
        error_ = "delivery " + std::to_string(i) + " has " + std::to_string(d->body.size()) + " bytes";
        return;
      }
      const std::uint64_t seq = codec::load_u64(d->body.data());
      std::uint64_t& expected = next_[d->sender];
      if (seq != expected) {
        error_ = "from " + std::to_string(d->sender) + ": got " + std::to_string(seq) + ", expected " +
                 std::to_string(expected);
        return;
      }
      ++expected;
    }
  }

  std::string error_;
  std::map<UserId, std::uint64_t> next_;
  std::thread thread_;
};

TEST_P(HubRelayTest, PerPairOrderHoldsOver10000Relays) {
  start();
  Peer sender = connect_peer();
  Peer receiver = connect_peer();
  constexpr std::uint64_t kRelays = 10'000;
  OrderedReader reader(receiver.client, kRelays);
  const std::vector<UserId> to{receiver.id};
  for (std::uint64_t seq = 0; seq < kRelays; ++seq) {
    ASSERT_TRUE(sender.client.relay(to, numbered_body(seq)).ok());
  }
  reader.join();
  EXPECT_EQ(reader.error(), "");
  EXPECT_EQ(reader.received(), (std::map<UserId, std::uint64_t>{{sender.id, kRelays}}));
}

// With 3 shards some sender/receiver pairs are cross-shard; which ones is up to SO_REUSEPORT, so use
// 4 x 4 pairs. Every receiver must see every sender's numbers in order and complete.
TEST_P(HubRelayTest, PerPairOrderHoldsForFourSendersToFourReceivers) {
  start();
  std::vector<Peer> senders = connect_many(4);
  std::vector<Peer> receivers = connect_many(4);
  constexpr std::uint64_t kRelaysPerSender = 2'500;
  std::vector<UserId> to;
  to.reserve(receivers.size());
  for (const Peer& r : receivers) {
    to.push_back(r.id);
  }
  std::vector<std::unique_ptr<OrderedReader>> readers;
  readers.reserve(receivers.size());
  for (Peer& r : receivers) {
    readers.push_back(std::make_unique<OrderedReader>(r.client, senders.size() * kRelaysPerSender));
  }
  std::vector<std::string> send_errors(senders.size());
  std::vector<std::thread> sending;
  for (std::size_t s = 0; s < senders.size(); ++s) {
    sending.emplace_back([&, s] {
      for (std::uint64_t seq = 0; seq < kRelaysPerSender && send_errors[s].empty(); ++seq) {
        if (Result<void> sent = senders[s].client.relay(to, numbered_body(seq)); !sent) {
          send_errors[s] = sent.error().message;
        }
      }
    });
  }
  for (std::thread& t : sending) {
    t.join();
  }
  std::map<UserId, std::uint64_t> complete;
  for (const Peer& s : senders) {
    complete[s.id] = kRelaysPerSender;
  }
  for (std::size_t r = 0; r < readers.size(); ++r) {
    readers[r]->join();
    EXPECT_EQ(readers[r]->error(), "") << "receiver " << r;
    EXPECT_EQ(readers[r]->received(), complete) << "receiver " << r;
  }
  for (const std::string& e : send_errors) {
    EXPECT_EQ(e, "");
  }
}

// A frame that lies whole in a receive buffer is copied out of it once, into the block all its
// receivers share; a frame larger than a buffer is received straight into its own block, so only what
// arrived with its header in a receive buffer is copied. Never a copy per receiver.
TEST_P(HubRelayTest, EachRelayIsCopiedAtMostOnceWhateverItsFanout) {
  HubConfig config = test_config(GetParam());
  config.recv_buffer_size = 32768;
  start_hub(config);
  Peer sender = connect_peer();
  Peer b = connect_peer();
  Peer c = connect_peer();
  const std::vector<UserId> to{b.id, c.id};
  const HubStats before = stats();
  std::uint64_t deliver_bytes = 0;
  for (const std::size_t size : {std::size_t{100}, std::size_t{1024}, std::size_t{16384}}) {
    const Bytes body = random_bytes(size, size);
    ASSERT_TRUE(sender.client.relay(to, body).ok());
    ASSERT_TRUE(next_is_delivery(b.client, sender.id, body)) << size << " bytes";
    ASSERT_TRUE(next_is_delivery(c.client, sender.id, body)) << size << " bytes";
    deliver_bytes += protocol::kDeliverPrefixSize + size;
  }
  HubStats s = stats();
  // Once each, not twice; or not at all for the two small frames if the hub lent them (both receivers
  // were idle, so they could batch them at once).
  const std::uint64_t lent = s.lent_frames - before.lent_frames;
  ASSERT_LE(lent, 2U);
  const std::uint64_t small_lent_bytes[] = {0, 0, 2 * protocol::kDeliverPrefixSize + 100 + 1024};
  if (lent == 1) {
    const std::uint64_t copied = s.copied_out_bytes - before.copied_out_bytes;
    EXPECT_TRUE(copied == deliver_bytes - protocol::kDeliverPrefixSize - 100 ||
                copied == deliver_bytes - protocol::kDeliverPrefixSize - 1024)
        << copied;
  } else {
    EXPECT_EQ(s.copied_out_bytes - before.copied_out_bytes, deliver_bytes - small_lent_bytes[lent]);
  }
  deliver_bytes = s.copied_out_bytes - before.copied_out_bytes;

  const Bytes big = random_bytes(protocol::kMaxBodySize, 7);
  ASSERT_TRUE(sender.client.relay(to, big).ok());
  EXPECT_TRUE(next_is_delivery(b.client, sender.id, big));
  EXPECT_TRUE(next_is_delivery(c.client, sender.id, big));
  s = stats();
  EXPECT_EQ(s.copied_out_bytes - before.copied_out_bytes, deliver_bytes);  // its own block: no copy-out
  // Only what reached receive buffers before the multishot recv stopped for the direct receive is
  // copied, and never more than the frame once (on loopback the multishot may already have read it
  // all by the time its first completion is seen).
  EXPECT_LE(s.copied_assembly_bytes - before.copied_assembly_bytes,
            protocol::kHeaderSize + to.size() * protocol::kIdSize + big.size());
}

// A small frame to receivers with nothing queued goes out of its receive buffer as it lies: each
// receiver copies it into its send batch in the same loop iteration, and nothing is copied out.
TEST_P(HubRelayTest, ASmallRelayToIdleReceiversIsLentNotCopiedOut) {
  start_hub(test_config(GetParam()));
  Peer sender = connect_peer();
  Peer b = connect_peer();
  Peer c = connect_peer();
  const HubStats before = stats();
  const Bytes body = random_bytes(300, 11);
  const std::vector<UserId> to{b.id, c.id};
  ASSERT_TRUE(sender.client.relay(to, body).ok());
  ASSERT_TRUE(next_is_delivery(b.client, sender.id, body));
  ASSERT_TRUE(next_is_delivery(c.client, sender.id, body));
  const HubStats s = stats();
  const std::uint64_t lent = s.lent_frames - before.lent_frames;
  const std::uint64_t copied = s.copied_out_bytes - before.copied_out_bytes;
  if (GetParam() == 1) {
    EXPECT_EQ(lent, 1U);
    EXPECT_EQ(copied, 0U);
  } else {  // a receiver on another shard reads it later, from another thread: copied out once
    EXPECT_TRUE((lent == 1 && copied == 0) ||
                (lent == 0 && copied == protocol::kDeliverPrefixSize + body.size()))
        << lent << " lent, " << copied << " bytes copied out";
  }
}

// K=255 with 2 receive buffers per shard: frames that fit a buffer and frames larger than one, to
// receivers spread over the shards. Bytes copied per frame do not grow with K.
TEST_P(HubRelayTest, FanoutTo255UnderReceiveBufferShortageCopiesEachFrameOnce) {
  HubConfig config = test_config(GetParam());
  config.recv_buffer_count = 2;
  start_hub(config);
  Peer sender = connect_peer();
  std::vector<Peer> receivers;
  std::vector<UserId> ids;
  for (std::size_t i = 0; i < protocol::kMaxReceivers; ++i) {
    receivers.push_back(connect_peer());
    ids.push_back(receivers.back().id);
  }
  const HubStats before = stats();
  std::vector<Bytes> bodies;
  for (std::size_t i = 0; i < 12; ++i) {
    bodies.push_back(random_bytes(i % 3 == 2 ? 200'000 : 20'000, i));
  }
  // Each frame may be copied once whole: out of its buffer, or assembled when it arrived split (a large
  // one only in the receive buffers that came before its direct receive).
  std::uint64_t copy_bound = 0;
  for (const Bytes& body : bodies) {
    ASSERT_TRUE(sender.client.relay(ids, body).ok());
    copy_bound += protocol::kHeaderSize + protocol::kIdSize * ids.size() + body.size();
  }
  for (Peer& receiver : receivers) {
    for (const Bytes& body : bodies) {
      ASSERT_TRUE(next_is_delivery(receiver.client, sender.id, body)) << "receiver " << receiver.id;
    }
  }
  const HubStats s = stats();
  EXPECT_EQ(s.deliveries - before.deliveries, bodies.size() * protocol::kMaxReceivers);
  const std::uint64_t copied =
      s.copied_out_bytes - before.copied_out_bytes + s.copied_assembly_bytes - before.copied_assembly_bytes;
  EXPECT_GT(copied, 0U);
  EXPECT_LE(copied, copy_bound) << "a frame was copied more than once (per receiver?)";
}

TEST_P(HubRelayTest, SendZcRelayArrivesByteExact) {
  HubConfig config = test_config(GetParam());
  config.send_zc = true;
  Result<std::unique_ptr<Hub>> started = Hub::start(config);
  if (!started && started.error().message.find("SENDMSG_ZC") != std::string::npos) {
    GTEST_SKIP() << "kernel lacks SENDMSG_ZC: " << started.error().message;
  }
  ASSERT_TRUE(started.ok()) << started.error().message;
  hub_ = std::move(*started);
  std::vector<Peer> peers = connect_many(4);
  const Bytes body = random_bytes(64 << 10, 64);
  ASSERT_TRUE(peers[0].client.relay(ids_except(peers, 0), body).ok());
  for (std::size_t i = 1; i < peers.size(); ++i) {
    EXPECT_TRUE(next_is_delivery(peers[i].client, peers[0].id, body)) << "receiver " << i;
  }
}

TEST_P(HubRelayTest, StopWithClientsConnectedEndsTheirStreams) {
  HubConfig config = test_config(GetParam());
  config.shutdown_grace = std::chrono::milliseconds(300);
  start_hub(config);
  std::vector<Peer> peers = connect_many(4);
  ASSERT_TRUE(wait_connections(4));
  const auto began = std::chrono::steady_clock::now();
  hub_->stop();
  // Idle clients never close, so each drain runs out its grace; the bound is generous for debug/asan.
  EXPECT_LT(std::chrono::steady_clock::now() - began, config.shutdown_grace + std::chrono::seconds(5));
  for (Peer& p : peers) {
    Result<Frame> frame = p.client.read_frame(kFrameTimeout);
    ASSERT_FALSE(frame.ok()) << "a frame after stop";
    EXPECT_EQ(frame.error().domain, ErrorDomain::kNone) << frame.error().message;
  }
}

// The receiver drains 1 MiB in small paced reads; far below the 64 MiB limit, it must not be cut off.
TEST_P(HubRelayTest, SlowSteadyReaderGetsMaxBodyComplete) {
  start();
  Peer sender = connect_peer();
  SocketPeer receiver = connect_socket_peer();  // read below as a raw stream, in small chunks
  const Bytes body = random_bytes(protocol::kMaxBodySize, 99);
  ASSERT_TRUE(sender.client.relay(std::vector<UserId>{receiver.id}, body).ok());

  Bytes wire(protocol::kDeliverPrefixSize + body.size());
  std::size_t got = 0;
  constexpr std::size_t kChunk = 4096;
  while (got < wire.size()) {  // every pass reads at least one byte or fails
    pollfd p{receiver.client.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, static_cast<int>(kFrameTimeout.count())), 1) << "stalled at byte " << got;
    const ssize_t n = ::recv(receiver.client.fd(), wire.data() + got, std::min(kChunk, wire.size() - got), 0);
    ASSERT_GT(n, 0) << "connection ended at byte " << got << ": " << std::strerror(errno);
    got += static_cast<std::size_t>(n);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // pacing the reader, not synchronising
  }
  EXPECT_EQ(wire[0], static_cast<std::uint8_t>(FrameType::kDeliver));
  EXPECT_EQ(codec::load_u32(wire.data() + 4), protocol::kIdSize + body.size());
  EXPECT_EQ(codec::load_u64(wire.data() + 8), sender.id);
  EXPECT_TRUE(std::equal(body.begin(), body.end(), wire.begin() + protocol::kDeliverPrefixSize));
  EXPECT_EQ(stats().slow_consumer_closes, 0U);
  EXPECT_TRUE(nothing_pending(receiver.client, receiver.id));
}

using HubRelayScaleTest = RelayFixture;

TEST_F(HubRelayScaleTest, ThreeThousandClientsAcrossThreeShards) {
  start_hub(test_config(3));
  constexpr std::size_t kClients = 3000;
  std::vector<Peer> peers = connect_many(kClients);
  std::set<UserId> ids;
  for (const Peer& p : peers) {
    ids.insert(p.id);
  }
  EXPECT_EQ(ids.size(), kClients);
  EXPECT_EQ(ids.count(0), 0U);
  ASSERT_TRUE(wait_connections(kClients)) << "connections " << stats().connections;
  Result<std::vector<UserId>> listed = peers[kClients / 2].client.list();
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_EQ(*listed, ids_except(peers, kClients / 2));

  std::vector<std::size_t> order(kClients - 1);
  std::iota(order.begin(), order.end(), std::size_t{1});
  std::shuffle(order.begin(), order.end(), std::mt19937(2024));
  order.resize(protocol::kMaxReceivers);
  std::vector<UserId> receivers;
  receivers.reserve(order.size());
  for (const std::size_t i : order) {
    receivers.push_back(peers[i].id);
  }
  const Bytes body = bytes_of("to 255 of 3000");
  ASSERT_TRUE(peers[0].client.relay(receivers, body).ok());
  for (const std::size_t i : order) {
    ASSERT_TRUE(next_is_delivery(peers[i].client, peers[0].id, body)) << "receiver " << i;
  }
  peers.clear();
  EXPECT_TRUE(wait_connections(0)) << "connections " << stats().connections;
}

using HubRelayStartTest = RelayFixture;

TEST_F(HubRelayStartTest, PortInUseFailsWithMessage) {
  start_hub(test_config());
  HubConfig config = test_config();
  config.relay_port = hub_->relay_port();
  Result<std::unique_ptr<Hub>> second = Hub::start(config);
  ASSERT_FALSE(second.ok()) << "a second hub started on port " << config.relay_port;
  EXPECT_NE(second.error().message.find("in use"), std::string::npos) << second.error().message;
}

// Ids are found through a directory indexed by id modulo its size; two live ids in one slot mark it
// shared, and a relay to an id there asks every shard. Only the owner delivers, and nobody else may
// count the receiver as skipped. 32 max connections give the 64-slot minimum: ids 1, 65, 129 share.
using HubRelayDirectoryTest = RelayFixture;

TEST_F(HubRelayDirectoryTest, ReceiverInSharedDirectorySlotIsDeliveredAndNotCountedSkipped) {
  HubConfig config = test_config(3);
  config.max_connections = 32;
  start_hub(config);
  Peer first = connect_peer();
  ASSERT_EQ(first.id, 1U);
  for (UserId id = 2; id <= 64; ++id) {  // churn the counter up to the next id that lands in slot 1
    connect_peer().client.close();
    ASSERT_TRUE(wait_connections(1)) << "after id " << id;
  }
  Peer second = connect_peer();
  ASSERT_EQ(second.id, 65U);  // slot 1 is now shared with the live id 1
  Peer sender = connect_peer();
  const HubStats before = stats();
  const Bytes body = bytes_of("shared slot");
  ASSERT_TRUE(sender.client.relay(std::vector<UserId>{first.id, second.id}, body).ok());
  EXPECT_TRUE(next_is_delivery(first.client, sender.id, body));
  EXPECT_TRUE(next_is_delivery(second.client, sender.id, body));
  ASSERT_TRUE(shards_caught_up(sender.client));
  EXPECT_EQ(stats().deliveries - before.deliveries, 2U);
  EXPECT_EQ(stats().skipped_receivers - before.skipped_receivers, 0U);

  const HubStats unknown_before = stats();
  ASSERT_TRUE(sender.client.relay(std::vector<UserId>{129}, body).ok());  // nobody has 129: skip once
  ASSERT_TRUE(shards_caught_up(sender.client));
  EXPECT_EQ(stats().skipped_receivers - unknown_before.skipped_receivers, 1U);
  EXPECT_TRUE(nothing_pending(first.client, first.id));
  EXPECT_TRUE(nothing_pending(second.client, second.id));
}

}  // namespace
}  // namespace ringhub::testing
