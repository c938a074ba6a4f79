// Tests for core/maybe_tally.hpp: a relay receiver whose shard was unknown is counted as skipped
// exactly once when nobody delivered to it, whatever order the other shards answer in.
#include "core/maybe_tally.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <vector>

namespace ringhub {
namespace {

using Answer = std::vector<std::uint8_t>;

TEST(MaybeTallyTest, CountsAnIdNobodyFoundOnceInEveryAnswerOrder) {
  // Four ids asked everywhere: id 0 found by the origin, id 1 by shard B, id 2 by nobody, id 3 by
  // shards A and C both (found twice is still found, not a negative skip).
  const std::array<Answer, 3> answers = {Answer{0, 0, 0, 1}, Answer{0, 1, 0, 0}, Answer{0, 0, 0, 1}};
  std::array<int, 3> order = {0, 1, 2};
  int orders = 0;
  do {
    MaybeTally tally(3, 4);
    tally.found[0] = 1;  // the origin's own delivery
    EXPECT_FALSE(tally.fold(answers[order[0]]));
    EXPECT_FALSE(tally.fold(answers[order[1]]));
    EXPECT_TRUE(tally.fold(answers[order[2]]));
    EXPECT_EQ(tally.nobody_found(), 1U);
    ++orders;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 6);
}

TEST(MaybeTallyTest, LastAnswerIsTheOneThatCompletesIt) {
  MaybeTally tally(2, 1);
  EXPECT_FALSE(tally.fold(Answer{0}));
  EXPECT_EQ(tally.outstanding, 1U);
  EXPECT_TRUE(tally.fold(Answer{0}));
  EXPECT_EQ(tally.nobody_found(), 1U);
}

TEST(MaybeTallyTest, EveryIdFoundSomewhereSkipsNone) {
  MaybeTally tally(2, 3);
  tally.fold(Answer{1, 0, 0});
  EXPECT_TRUE(tally.fold(Answer{0, 1, 1}));
  EXPECT_EQ(tally.nobody_found(), 0U);
}

TEST(MaybeTallyTest, AShortAnswerFoldsOnlyTheIdsItHas) {
  MaybeTally tally(1, 3);
  EXPECT_TRUE(tally.fold(Answer{1}));
  EXPECT_EQ(tally.nobody_found(), 2U);
}

}  // namespace
}  // namespace ringhub
