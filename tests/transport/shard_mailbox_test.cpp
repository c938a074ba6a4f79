// Tests for transport/shard_mailbox on real rings (skipped where io_uring is refused): two shards'
// mailboxes on one thread, each over its own ring. Messages between them arrive in post order across
// batches, a second batch waits for the first to be taken, messages to oneself skip the ring, and the
// hub-wide count of messages in flight and the memory charge come back to zero.
#include "transport/shard_mailbox.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/op_tag.hpp"

namespace ringhub {
namespace {

constexpr unsigned kSqEntries = 16;
constexpr unsigned kCqEntries = 64;
constexpr unsigned kTableSize = 4;
constexpr unsigned kShards = 2;
// How long one turn waits for a completion that is not there: a MSG_RING between two rings of one
// thread completes within the next enter, so this is only the bound on an idle turn.
constexpr long long kTurnWaitNs = 1'000'000;

// Keeps the seq of every message it is handed, then frees it as a shard would.
struct Recorder final : MessageRecipient {
  explicit Recorder(MemoryAccount& memory) : memory(memory) {}
  void on_message(ShardMessage* message) override {
    auto* line = static_cast<LineMessage*>(message);
    seqs.push_back(line->seq);
    if (on_each) {
      on_each(*line);
    }
    retire(memory, line);
  }
  MemoryAccount& memory;
  std::vector<std::uint64_t> seqs;
  std::function<void(const LineMessage&)> on_each;
};

class ShardMailboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (unsigned i = 0; i < kShards; ++i) {
      if (Result<void> ready = rings_[i].init(kSqEntries, kCqEntries, kTableSize); !ready) {
        GTEST_SKIP() << "io_uring unavailable: " << ready.error().message;
      }
      fds_[i] = rings_[i].fd();
    }
    for (unsigned i = 0; i < kShards; ++i) {
      recorders_[i] = std::make_unique<Recorder>(memory_[i]);
      boxes_[i] = std::make_unique<ShardMailbox>(i, fds_, in_flight_, memory_[i], rings_[i], *recorders_[i]);
    }
  }

  static LineMessage* message(std::uint64_t seq, unsigned origin = 0) {
    auto* posted = new LineMessage(ShardMessage::Kind::kLineAdd, origin);
    posted->seq = seq;
    posted->x = std::string(64, 'x');  // on the heap: its charge is more than the message itself
    return posted;
  }

  // Submits shard `i`'s SQEs and handles every completion on it, as its loop would.
  unsigned turn(unsigned i) {
    __kernel_timespec briefly{0, kTurnWaitNs};
    const int ret = rings_[i].submit_and_wait(&briefly);
    EXPECT_FALSE(uring::enter_failed(ret)) << std::strerror(-ret);
    return rings_[i].reap([&](const io_uring_cqe& cqe) {
      switch (tag_op(cqe.user_data)) {
        case Op::kInbox: boxes_[i]->on_batch(tag_owner<ShardBatch>(cqe.user_data)); return;
        case Op::kOutbox:
          boxes_[i]->on_sent(static_cast<unsigned>(tag_number_of(cqe.user_data)), cqe);
          return;
        default: ADD_FAILURE() << "unexpected completion"; return;
      }
    });
  }
  // Turns both rings until neither has a completion left.
  void settle() {
    for (unsigned idle_rounds = 0; idle_rounds < 3;) {
      idle_rounds = turn(0) + turn(1) == 0 ? idle_rounds + 1 : 0;
    }
  }

  std::array<uring::Ring, kShards> rings_;
  std::array<int, kShards> fds_{-1, -1};
  std::atomic<std::int64_t> in_flight_{0};
  std::array<MemoryAccount, kShards> memory_;
  std::array<std::unique_ptr<Recorder>, kShards> recorders_;
  std::array<std::unique_ptr<ShardMailbox>, kShards> boxes_;
};

TEST_F(ShardMailboxTest, MessagesToAnotherShardArriveInPostOrderAsOneBatch) {
  for (std::uint64_t seq = 1; seq <= 5; ++seq) {
    boxes_[0]->post(1, message(seq));
  }
  EXPECT_EQ(in_flight_.load(), 5);
  EXPECT_GT(memory_[0].bytes(), 0) << "a posted message is charged to its sender";
  EXPECT_FALSE(boxes_[0]->nothing_queued());
  boxes_[0]->flush();
  EXPECT_TRUE(boxes_[0]->nothing_queued());
  settle();
  EXPECT_EQ(recorders_[1]->seqs, (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(in_flight_.load(), 0);
  EXPECT_EQ(memory_[0].bytes() + memory_[1].bytes(), 0) << "charged on one shard, released on the other";
}

TEST_F(ShardMailboxTest, ABatchWaitsForThePreviousOneToTheSameShardSoOrderHolds) {
  boxes_[0]->post(1, message(1));
  boxes_[0]->flush();
  boxes_[0]->post(1, message(2));
  boxes_[0]->flush();  // the first batch's MSG_RING has not completed: this one stays queued
  EXPECT_FALSE(boxes_[0]->nothing_queued());
  turn(0);  // submits the first, reaps its completion
  boxes_[0]->flush();
  EXPECT_TRUE(boxes_[0]->nothing_queued());
  settle();
  EXPECT_EQ(recorders_[1]->seqs, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(in_flight_.load(), 0);
}

TEST_F(ShardMailboxTest, MessagesToItselfSkipTheRingAndThosePostedWhileHandlingComeToo) {
  recorders_[0]->on_each = [&](const LineMessage& handled) {
    if (handled.seq < 3) {
      boxes_[0]->post(0, message(handled.seq + 10));  // a reply to itself, posted while handling
    }
  };
  boxes_[0]->post(0, message(1));
  boxes_[0]->post(0, message(2));
  boxes_[0]->drain_self();
  EXPECT_EQ(recorders_[0]->seqs, (std::vector<std::uint64_t>{1, 2, 11, 12}));
  EXPECT_EQ(turn(0), 0U) << "nothing went through the ring";
  EXPECT_TRUE(boxes_[0]->nothing_queued());
  EXPECT_EQ(in_flight_.load(), 0);
  EXPECT_EQ(memory_[0].bytes(), 0);
}

TEST_F(ShardMailboxTest, BothDirectionsAtOnceKeepTheirOwnOrder) {
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    boxes_[0]->post(1, message(seq, 0));
    boxes_[1]->post(0, message(100 + seq, 1));
  }
  boxes_[0]->flush();
  boxes_[1]->flush();
  settle();
  EXPECT_EQ(recorders_[1]->seqs, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(recorders_[0]->seqs, (std::vector<std::uint64_t>{101, 102, 103}));
  EXPECT_EQ(in_flight_.load(), 0);
}

}  // namespace
}  // namespace ringhub
