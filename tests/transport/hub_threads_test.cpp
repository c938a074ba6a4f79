// Hub integration tests with more shards than threads (--shards 4 on 1 and 2 threads): one thread
// steps several rings and blocks on all of them, so relays, LIST gathers and line messages that cross
// shards, and the stop, must all still complete. The same with --idle-poll-us, on those loops and on
// threads that drive one shard each (4 threads): a polling thread must miss no completion and stop.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "clients/cpp/line_client.hpp"
#include "tests/transport/hub_fixture.hpp"

namespace ringhub::testing {
namespace {

using protocol::UserId;

// More shards than either thread count below, so every thread drives at least two rings.
constexpr unsigned kShards = 4;
// Enough connections that SO_REUSEPORT puts some on every shard (all 16 on one of 4: p = 4^-15).
constexpr std::size_t kPeers = 16;
// Line clients running at once; each one's X is owned by the shard its hash picks.
constexpr std::size_t kLineClients = 8;
constexpr std::chrono::milliseconds kReplyTimeout{10'000};

struct ThreadsAndPoll {
  unsigned threads;
  std::chrono::microseconds idle_poll;
};

class HubThreadsTest : public HubTest, public ::testing::WithParamInterface<ThreadsAndPoll> {
 protected:
  void SetUp() override {
    HubConfig config = test_config(kShards);
    config.threads = GetParam().threads;
    config.idle_poll = GetParam().idle_poll;
    start_hub(config);
  }

  std::vector<Peer> connect_peers() {
    std::vector<Peer> peers;
    for (std::size_t i = 0; i < kPeers; ++i) {
      peers.push_back(connect_peer());
    }
    return peers;
  }
};

constexpr std::chrono::microseconds kNoPoll{0};
constexpr std::chrono::microseconds kPoll{200};

INSTANTIATE_TEST_SUITE_P(Threads, HubThreadsTest,
                         ::testing::Values(ThreadsAndPoll{1, kNoPoll}, ThreadsAndPoll{2, kNoPoll},
                                           ThreadsAndPoll{1, kPoll}, ThreadsAndPoll{2, kPoll},
                                           ThreadsAndPoll{kShards, kPoll}),
                         [](const ::testing::TestParamInfo<ThreadsAndPoll>& info) {
                           std::string name = std::to_string(info.param.threads) + "Threads";
                           if (info.param.idle_poll != kNoPoll) {
                             name += "Polling";
                           }
                           return name;
                         });

TEST_P(HubThreadsTest, ThreadsAreCappedByShards) {
  EXPECT_EQ(hub_->shard_count(), kShards);
  EXPECT_EQ(hub_->thread_count(), GetParam().threads);
}

TEST_P(HubThreadsTest, ListGathersEveryShard) {
  std::vector<Peer> peers = connect_peers();
  std::vector<UserId> all;
  all.reserve(peers.size());
  for (const Peer& p : peers) {
    all.push_back(p.id);
  }
  std::sort(all.begin(), all.end());
  for (Peer& p : peers) {
    auto listed = p.client.list(kReplyTimeout);
    ASSERT_TRUE(listed.ok()) << listed.error().message;
    std::vector<UserId> expected = all;
    std::erase(expected, p.id);
    EXPECT_EQ(*listed, expected);
  }
}

TEST_P(HubThreadsTest, EveryPeerRelaysToEveryOtherOnce) {
  std::vector<Peer> peers = connect_peers();
  for (Peer& sender : peers) {
    std::vector<UserId> others;
    for (const Peer& p : peers) {
      if (p.id != sender.id) {
        others.push_back(p.id);
      }
    }
    const std::vector<std::uint8_t> body = bytes_of("from " + std::to_string(sender.id));
    ASSERT_TRUE(sender.client.relay(others, body).ok());
  }
  for (Peer& receiver : peers) {
    std::map<UserId, int> seen;
    for (std::size_t i = 0; i + 1 < kPeers; ++i) {
      auto delivery = receiver.client.next_delivery(kReplyTimeout);
      ASSERT_TRUE(delivery.ok()) << delivery.error().message;
      EXPECT_EQ(delivery->body, bytes_of("from " + std::to_string(delivery->sender)));
      ++seen[delivery->sender];
    }
    EXPECT_EQ(seen.size(), kPeers - 1);
    EXPECT_EQ(seen.count(receiver.id), 0U);
  }
  EXPECT_EQ(stats().deliveries, kPeers * (kPeers - 1));
}

TEST_P(HubThreadsTest, LineMessagesCrossShardsAndComeBackOk) {
  std::vector<std::thread> runners;
  std::atomic<unsigned> succeeded{0};
  for (std::size_t i = 0; i < kLineClients; ++i) {
    runners.emplace_back([&, i] {
      client::LineClientOptions options;
      options.host = "127.0.0.1";
      options.port = hub_->line_port();
      options.message = "x" + std::to_string(i);
      auto outcome = client::run_line_client(options);
      if (outcome.ok()) {
        succeeded.fetch_add(1);
      } else {
        ADD_FAILURE() << options.message << ": " << outcome.error().message;
      }
    });
  }
  for (std::thread& runner : runners) {
    runner.join();
  }
  EXPECT_EQ(succeeded.load(), kLineClients);
}

TEST_P(HubThreadsTest, StopEndsEveryConnectionAndJoins) {
  std::vector<Peer> peers = connect_peers();
  ASSERT_TRUE(wait_connections(kPeers));
  hub_->stop();
  for (Peer& p : peers) {
    auto frame = p.client.read_frame(kReplyTimeout);
    ASSERT_FALSE(frame.ok()) << "a frame after stop";
    EXPECT_EQ(frame.error().domain, ErrorDomain::kNone) << frame.error().message;
  }
}

}  // namespace
}  // namespace ringhub::testing
