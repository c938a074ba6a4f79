// Tests for core/memory_account: the per-shard account (charges, releases, the published figure) and
// the budget's gate and resume levels, which decide whose input the hub reads.
#include "core/memory_account.hpp"

#include <gtest/gtest.h>

namespace ringhub {
namespace {

TEST(MemoryAccountTest, ChargesAndReleasesArePublished) {
  MemoryAccount account;
  account.charge(100);
  account.charge(28);
  EXPECT_EQ(account.bytes(), 128);
  EXPECT_EQ(account.bytes_published(), 128);
  account.release(100);
  EXPECT_EQ(account.bytes_published(), 28);
}

// A block charged on one shard and released on another leaves one account negative: only the sum
// across shards means anything.
TEST(MemoryAccountTest, ReleaseOnAnotherAccountGoesNegative) {
  MemoryAccount charged_here;
  MemoryAccount released_there;
  charged_here.charge(64);
  released_there.release(64);
  EXPECT_EQ(charged_here.bytes() + released_there.bytes(), 0);
  EXPECT_EQ(released_there.bytes_published(), -64);
}

TEST(MemoryBudgetTest, GateOpensNarrowsAndCloses) {
  const MemoryBudget budget(800);
  EXPECT_EQ(budget.high_watermark(), 600U);
  EXPECT_EQ(budget.low_watermark(), 500U);
  EXPECT_EQ(budget.gate(0), ReadGate::kOpen);
  EXPECT_EQ(budget.gate(599), ReadGate::kOpen);
  EXPECT_EQ(budget.gate(600), ReadGate::kLightOnly);
  EXPECT_EQ(budget.gate(799), ReadGate::kLightOnly);
  EXPECT_EQ(budget.gate(800), ReadGate::kClosed);
  EXPECT_EQ(budget.gate(5000), ReadGate::kClosed);  // past the budget: bytes in flight were kept
  EXPECT_EQ(budget.gate(-10), ReadGate::kOpen);
}

// Hysteresis: a paused heavy sender waits for the low watermark, a light one only for the high one.
TEST(MemoryBudgetTest, HeavySendersResumeLaterThanLightOnes) {
  const MemoryBudget budget(800);
  EXPECT_FALSE(budget.may_resume(600, Weight::kLight));
  EXPECT_TRUE(budget.may_resume(599, Weight::kLight));
  EXPECT_FALSE(budget.may_resume(599, Weight::kHeavy));
  EXPECT_FALSE(budget.may_resume(500, Weight::kHeavy));
  EXPECT_TRUE(budget.may_resume(499, Weight::kHeavy));
}

// Line messages past a connection's allowance are held back from half the budget until below 3/8; a
// connection holding messages back is not read from 3/4 until below 5/8, as a heavy sender.
TEST(MemoryBudgetTest, LinesAreHeldBackFromHalfTheBudgetAndThrottledFromTheHighWatermark) {
  const MemoryBudget budget(1600);
  EXPECT_FALSE(budget.holds_back_lines(799, false));
  EXPECT_TRUE(budget.holds_back_lines(800, false));
  EXPECT_TRUE(budget.holds_back_lines(600, true)) << "between the marks, it stays as it was";
  EXPECT_FALSE(budget.holds_back_lines(600, false));
  EXPECT_FALSE(budget.holds_back_lines(599, true));

  EXPECT_FALSE(budget.throttles_held_lines(1199, false));
  EXPECT_TRUE(budget.throttles_held_lines(1200, false));
  EXPECT_TRUE(budget.throttles_held_lines(1000, true));
  EXPECT_FALSE(budget.throttles_held_lines(999, true));
}

}  // namespace
}  // namespace ringhub
