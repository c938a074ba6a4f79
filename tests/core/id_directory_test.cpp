// Tests for core/id_directory: publish/lookup/retract, unknown ids, two live ids in one slot (the
// displaced one answers kAskEveryShard, never a wrong shard), retract of a displaced id, and readers
// racing one writer thread.
#include "core/id_directory.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace ringhub {
namespace {

using protocol::UserId;
using Where = IdDirectory::Where;

TEST(IdDirectoryTest, SlotCountIsAPowerOfTwoOfAtLeast64) {
  EXPECT_EQ(IdDirectory(0).slot_count(), 64U);
  EXPECT_EQ(IdDirectory(1).slot_count(), 64U);
  EXPECT_EQ(IdDirectory(64).slot_count(), 64U);
  EXPECT_EQ(IdDirectory(65).slot_count(), 128U);
  EXPECT_EQ(IdDirectory(1000).slot_count(), 1024U);
}

TEST(IdDirectoryTest, UnknownIdAnswersUnknown) {
  IdDirectory dir(64);
  const IdDirectory::Lookup l = dir.lookup(5);
  EXPECT_EQ(l.where, Where::kUnknown);
  EXPECT_EQ(l.shard, 0U);
  EXPECT_EQ(dir.lookup(0).where, Where::kUnknown);
}

TEST(IdDirectoryTest, PublishLookupRetract) {
  IdDirectory dir(64);
  dir.publish(7, 3);
  dir.publish(8, 0);
  IdDirectory::Lookup l = dir.lookup(7);
  EXPECT_EQ(l.where, Where::kShard);
  EXPECT_EQ(l.shard, 3U);
  l = dir.lookup(8);
  EXPECT_EQ(l.where, Where::kShard);
  EXPECT_EQ(l.shard, 0U);
  EXPECT_EQ(dir.lookup(9).where, Where::kUnknown);

  dir.retract(7);
  EXPECT_EQ(dir.lookup(7).where, Where::kUnknown);
  EXPECT_EQ(dir.lookup(8).where, Where::kShard);  // neighbours untouched
  dir.retract(7);                                 // twice is harmless
  EXPECT_EQ(dir.lookup(8).shard, 0U);
}

TEST(IdDirectoryTest, RetractOfAnUnpublishedIdChangesNothing) {
  IdDirectory dir(64);
  dir.publish(3, 2);
  dir.retract(3 + 64);  // same slot, never published
  const IdDirectory::Lookup l = dir.lookup(3);
  EXPECT_EQ(l.where, Where::kShard);
  EXPECT_EQ(l.shard, 2U);
}

TEST(IdDirectoryTest, AnIdInTheSameSlotIsNotMistakenForTheOwner) {
  IdDirectory dir(64);
  dir.publish(10, 4);
  EXPECT_EQ(dir.lookup(10 + dir.slot_count()).where, Where::kUnknown);
}

TEST(IdDirectoryTest, HighestShardAndLargeIds) {
  IdDirectory dir(64);
  const unsigned top = IdDirectory::kMaxShards - 1;
  dir.publish(1, top);
  EXPECT_EQ(dir.lookup(1).where, Where::kShard);
  EXPECT_EQ(dir.lookup(1).shard, top);
  const UserId big = IdDirectory::kMaxId;  // the largest id the packed word holds
  dir.publish(big, 5);
  EXPECT_EQ(dir.lookup(big).where, Where::kShard);
  EXPECT_EQ(dir.lookup(big).shard, 5U);
}

TEST(IdDirectoryTest, CollisionDisplacedIdAsksEveryShardNewerAnswersItsShard) {
  IdDirectory dir(64);
  const UserId older = 12;
  const UserId newer = older + dir.slot_count();
  dir.publish(older, 1);
  dir.publish(newer, 2);

  const IdDirectory::Lookup n = dir.lookup(newer);
  EXPECT_EQ(n.where, Where::kShard);
  EXPECT_EQ(n.shard, 2U);
  EXPECT_EQ(dir.lookup(older).where, Where::kAskEveryShard);
}

TEST(IdDirectoryTest, RetractOfADisplacedIdLeavesTheNewerOwner) {
  IdDirectory dir(64);
  const UserId older = 12;
  const UserId newer = older + dir.slot_count();
  dir.publish(older, 1);
  dir.publish(newer, 2);
  dir.retract(older);
  const IdDirectory::Lookup n = dir.lookup(newer);
  EXPECT_EQ(n.where, Where::kShard);
  EXPECT_EQ(n.shard, 2U);
}

TEST(IdDirectoryTest, DisplacedIdStaysReachableAfterTheNewerLeaves) {
  IdDirectory dir(64);
  const UserId older = 12;
  const UserId newer = older + dir.slot_count();
  dir.publish(older, 1);
  dir.publish(newer, 2);
  dir.retract(newer);
  // `older` is still live: it must not become unknown (its relays would be dropped).
  EXPECT_EQ(dir.lookup(older).where, Where::kAskEveryShard);
  EXPECT_EQ(dir.lookup(newer).where, Where::kAskEveryShard);  // slower, never wrong
}

TEST(IdDirectoryTest, ThreeIdsInOneSlotNeverGiveAWrongShard) {
  IdDirectory dir(64);
  const UserId n = dir.slot_count();
  dir.publish(5, 1);
  dir.publish(5 + n, 2);
  dir.publish(5 + 2 * n, 3);
  EXPECT_EQ(dir.lookup(5).where, Where::kAskEveryShard);
  EXPECT_EQ(dir.lookup(5 + n).where, Where::kAskEveryShard);
  EXPECT_EQ(dir.lookup(5 + 2 * n).where, Where::kShard);
  EXPECT_EQ(dir.lookup(5 + 2 * n).shard, 3U);
  dir.retract(5 + 2 * n);
  dir.publish(5 + 3 * n, 4);  // a new owner: the others still ask everyone
  EXPECT_EQ(dir.lookup(5).where, Where::kAskEveryShard);
  EXPECT_EQ(dir.lookup(5 + n).where, Where::kAskEveryShard);
  EXPECT_EQ(dir.lookup(5 + 3 * n).shard, 4U);
}

// One writer publishes and retracts ids (some landing in the slots of long-lived ids) while readers
// look up. A long-lived id must always answer its own shard or kAskEveryShard: never unknown, never
// another shard. A churned id may answer anything but a wrong shard.
TEST(IdDirectoryTest, ConcurrentReadersNeverSeeAWrongShard) {
  IdDirectory dir(256);
  const UserId slots = dir.slot_count();
  constexpr UserId kStable = 64;  // ids 1..64, published for the whole test
  auto stable_shard = [](UserId id) { return static_cast<unsigned>(id % 7); };
  auto churn_shard = [](UserId id) { return static_cast<unsigned>(id % 5 + 10); };
  for (UserId id = 1; id <= kStable; ++id) {
    dir.publish(id, stable_shard(id));
  }
  // Odd stable ids share their slot with churned ids; even ones never do.
  std::vector<UserId> churn;
  for (UserId id = 1; id <= kStable; id += 2) {
    churn.push_back(id + slots);
    churn.push_back(id + 2 * slots);
  }
  for (UserId id = kStable + 1; id < slots; ++id) {
    churn.push_back(id);
  }

  constexpr int kWriterRounds = 2000;
  constexpr int kReaderRounds = 3000;
  std::atomic<bool> go{false};
  std::atomic<int> wrong{0};
  std::atomic<int> lost_even{0};

  std::thread writer([&] {
    while (!go.load(std::memory_order_acquire)) {
    }
    for (int round = 0; round < kWriterRounds; ++round) {
      for (const UserId id : churn) {
        dir.publish(id, churn_shard(id));
      }
      for (const UserId id : churn) {
        dir.retract(id);
      }
    }
  });
  auto reader = [&] {
    while (!go.load(std::memory_order_acquire)) {
    }
    for (int round = 0; round < kReaderRounds; ++round) {
      for (UserId id = 1; id <= kStable; ++id) {
        const IdDirectory::Lookup l = dir.lookup(id);
        const bool right = (l.where == Where::kShard && l.shard == stable_shard(id)) ||
                           (id % 2 == 1 && l.where == Where::kAskEveryShard);
        if (!right) {
          (id % 2 == 0 ? lost_even : wrong).fetch_add(1, std::memory_order_relaxed);
        }
      }
      for (const UserId id : churn) {
        const IdDirectory::Lookup l = dir.lookup(id);
        if (l.where == Where::kShard && l.shard != churn_shard(id)) {
          wrong.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
  };
  std::thread reader1(reader);
  std::thread reader2(reader);
  go.store(true, std::memory_order_release);
  writer.join();
  reader1.join();
  reader2.join();

  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(lost_even.load(), 0);  // ids whose slot nobody else used answer their shard exactly
  for (UserId id = 1; id <= kStable; ++id) {
    const IdDirectory::Lookup l = dir.lookup(id);
    if (id % 2 == 0) {
      EXPECT_EQ(l.where, Where::kShard) << id;
      EXPECT_EQ(l.shard, stable_shard(id)) << id;
    } else {
      EXPECT_EQ(l.where, Where::kAskEveryShard) << id;  // its slot was shared while it lived
    }
  }
  for (const UserId id : churn) {
    EXPECT_NE(dir.lookup(id).where, Where::kShard) << id;  // all retracted
  }
}

TEST(IdDirectoryTest, SlotIsExactAgainOnceDisplacedIdsLeave) {
  IdDirectory dir(64);
  const UserId n = dir.slot_count();
  dir.publish(7, 1);
  dir.publish(7 + n, 2);      // displaces 7
  dir.publish(7 + 2 * n, 3);  // displaces 7 + n
  EXPECT_EQ(dir.lookup(7).where, Where::kAskEveryShard);
  dir.retract(7);
  dir.retract(7 + n);
  // Both displaced ids are gone: the owner answers exactly and strangers are unknown again.
  EXPECT_EQ(dir.lookup(7 + 2 * n).where, Where::kShard);
  EXPECT_EQ(dir.lookup(7 + 3 * n).where, Where::kUnknown);
  EXPECT_EQ(dir.lookup(7).where, Where::kUnknown);
  dir.retract(7 + 2 * n);
  EXPECT_EQ(dir.lookup(7 + 2 * n).where, Where::kUnknown);
}

}  // namespace
}  // namespace ringhub
