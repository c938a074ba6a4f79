// Tests for core/fanout: one shard keeps every receiver local (duplicates and the sender skipped); with
// several shards the directory routes ids to their shards, drops unknown ids and plans kAskEveryShard
// ids for every shard; a reused planner starts each plan afresh.
#include "core/fanout.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "core/id_directory.hpp"

namespace ringhub {
namespace {

using protocol::UserId;
using Ids = std::vector<UserId>;

TEST(FanoutTest, SingleShardKeepsEveryReceiverLocal) {
  FanoutPlanner planner(1, 0, nullptr);  // one shard: the directory is never consulted
  const Ids receivers = {5, 3, 9, 1000};
  const FanoutPlan& plan = planner.plan(1, receivers);
  EXPECT_EQ(plan.local, (Ids{3, 5, 9, 1000}));  // ascending, even ids nobody owns (the registry decides)
  ASSERT_EQ(plan.remote.size(), 1U);
  EXPECT_TRUE(plan.remote[0].empty());
  EXPECT_EQ(plan.skipped, 0U);
}

TEST(FanoutTest, SingleShardSkipsDuplicatesAndTheSender) {
  FanoutPlanner planner(1, 0, nullptr);
  const Ids receivers = {4, 2, 4, 7, 2, 4, 9};
  const FanoutPlan& plan = planner.plan(7, receivers);
  EXPECT_EQ(plan.local, (Ids{2, 4, 9}));
  EXPECT_EQ(plan.skipped, 4U);  // three duplicates and the sender
}

TEST(FanoutTest, SenderListedTwiceIsSkippedTwice) {
  FanoutPlanner planner(1, 0, nullptr);
  const Ids receivers = {3, 3};
  const FanoutPlan& plan = planner.plan(3, receivers);
  EXPECT_TRUE(plan.local.empty());
  EXPECT_EQ(plan.skipped, 2U);  // every receiver entry is either planned or counted skipped
}

TEST(FanoutTest, OnlyTheSenderGivesAnEmptyPlan) {
  FanoutPlanner planner(1, 0, nullptr);
  const Ids receivers = {8};
  const FanoutPlan& plan = planner.plan(8, receivers);
  EXPECT_TRUE(plan.local.empty());
  EXPECT_EQ(plan.skipped, 1U);
}

TEST(FanoutTest, MultiShardRoutesIdsToTheirShards) {
  IdDirectory dir(64);
  dir.publish(1, 0);
  dir.publish(2, 1);
  dir.publish(3, 2);
  dir.publish(4, 1);
  dir.publish(5, 3);
  FanoutPlanner planner(4, 1, &dir);  // this is shard 1
  const Ids receivers = {5, 4, 3, 2, 1};
  const FanoutPlan& plan = planner.plan(99, receivers);
  EXPECT_EQ(plan.local, (Ids{2, 4}));
  ASSERT_EQ(plan.remote.size(), 4U);
  EXPECT_EQ(plan.remote[0], (Ids{1}));
  EXPECT_TRUE(plan.remote[1].empty());  // never a remote list for this shard
  EXPECT_EQ(plan.remote[2], (Ids{3}));
  EXPECT_EQ(plan.remote[3], (Ids{5}));
  EXPECT_EQ(plan.skipped, 0U);
}

TEST(FanoutTest, MultiShardSkipsUnknownIdsDuplicatesAndTheSender) {
  IdDirectory dir(64);
  dir.publish(1, 0);
  dir.publish(2, 1);
  FanoutPlanner planner(2, 0, &dir);
  const Ids receivers = {2, 40, 2, 1, 41, 7};
  const FanoutPlan& plan = planner.plan(7, receivers);
  EXPECT_EQ(plan.local, (Ids{1}));
  EXPECT_EQ(plan.remote[1], (Ids{2}));
  EXPECT_TRUE(plan.remote[0].empty());
  EXPECT_EQ(plan.skipped, 4U);  // 40 and 41 unknown, one duplicate 2, the sender 7
}

TEST(FanoutTest, AskEveryShardIdsArePlannedForEveryShard) {
  IdDirectory dir(64);
  const UserId displaced = 6;
  const UserId owner = displaced + dir.slot_count();
  dir.publish(displaced, 2);
  dir.publish(owner, 0);  // displaces 6: its slot is now shared
  ASSERT_EQ(dir.lookup(displaced).where, IdDirectory::Where::kAskEveryShard);
  dir.publish(9, 3);
  FanoutPlanner planner(4, 1, &dir);
  const Ids receivers = {9, displaced, owner};
  const FanoutPlan& plan = planner.plan(100, receivers);
  EXPECT_TRUE(plan.local.empty());
  EXPECT_EQ(plan.everywhere, (Ids{displaced}));
  EXPECT_EQ(plan.remote[0], (Ids{owner}));
  EXPECT_TRUE(plan.remote[1].empty());
  EXPECT_TRUE(plan.remote[2].empty());
  EXPECT_EQ(plan.remote[3], (Ids{9}));
  EXPECT_EQ(plan.skipped, 0U);
}

TEST(FanoutTest, ReusedPlannerClearsThePreviousPlan) {
  IdDirectory dir(64);
  dir.publish(1, 0);
  dir.publish(2, 1);
  dir.publish(3, 2);
  FanoutPlanner planner(3, 0, &dir);
  const Ids first = {1, 2, 3, 3, 50};
  const FanoutPlan& plan = planner.plan(9, first);
  EXPECT_EQ(plan.local, (Ids{1}));
  EXPECT_EQ(plan.remote[1], (Ids{2}));
  EXPECT_EQ(plan.remote[2], (Ids{3}));
  EXPECT_EQ(plan.skipped, 2U);

  const Ids second = {2};
  const FanoutPlan& again = planner.plan(9, second);
  EXPECT_EQ(&again, &plan);  // the same plan object, reused
  EXPECT_TRUE(again.local.empty());
  EXPECT_EQ(again.remote[1], (Ids{2}));
  EXPECT_TRUE(again.remote[2].empty());
  EXPECT_EQ(again.skipped, 0U);

  const FanoutPlan& empty = planner.plan(9, Ids{});
  EXPECT_TRUE(empty.local.empty());
  for (const Ids& ids : empty.remote) {
    EXPECT_TRUE(ids.empty());
  }
  EXPECT_EQ(empty.skipped, 0U);
}

TEST(FanoutTest, FullReceiverListOnOneShard) {
  FanoutPlanner planner(1, 0, nullptr);
  Ids receivers;
  for (UserId id = protocol::kMaxReceivers; id >= 1; --id) {
    receivers.push_back(id);
  }
  const FanoutPlan& plan = planner.plan(1, receivers);
  ASSERT_EQ(plan.local.size(), protocol::kMaxReceivers - 1);
  EXPECT_EQ(plan.local.front(), 2U);
  EXPECT_EQ(plan.local.back(), protocol::kMaxReceivers);
  EXPECT_EQ(plan.skipped, 1U);
}

}  // namespace
}  // namespace ringhub
