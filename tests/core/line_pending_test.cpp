// Tests for core/line_pending: answers by X oldest first, unmatched oks, a gone origin dropping only its
// entries, a gone target handing its entries back to be retargeted (keeping their age) or dropped, random
// interleavings of all of these checked against a plain model, tables empty afterwards, 100k entries,
// and X values aimed at one bucket of the old std::hash spread out under the keyed hash.
#include "core/line_pending.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tests/core/test_hash_key.hpp"

namespace ringhub {
namespace {

using Answered = PendingMessages::Answered;
using Orphan = PendingMessages::Orphan;

constexpr LineEndpoint kA{0, 1};
constexpr LineEndpoint kB{0, 2};
constexpr LineEndpoint kC{1, 3};
constexpr LineEndpoint kD{1, 4};

void expect_empty(const PendingMessages& pending) {
  EXPECT_EQ(pending.size(), 0U);
  EXPECT_EQ(pending.bytes(), 0U);
  const PendingMessages::IndexSizes sizes = pending.index_sizes();
  EXPECT_EQ(sizes.entries, 0U);
  EXPECT_EQ(sizes.xs, 0U);
  EXPECT_EQ(sizes.origins, 0U);
  EXPECT_EQ(sizes.targets, 0U);
}

std::vector<std::uint64_t> seqs_of(const std::vector<Orphan>& orphans) {
  std::vector<std::uint64_t> seqs;
  seqs.reserve(orphans.size());
  for (const Orphan& o : orphans) {
    seqs.push_back(o.seq);
  }
  return seqs;
}

TEST(LineEndpointTest, ComparableAndHashable) {
  EXPECT_EQ(kA, (LineEndpoint{0, 1}));
  EXPECT_NE(kA, kB);
  EXPECT_NE((LineEndpoint{0, 7}), (LineEndpoint{1, 7}));  // the shard is part of the identity
  EXPECT_LT(kA, kB);
  EXPECT_LT(kB, kC);
  std::unordered_set<LineEndpoint> set{kA, kB, kC, LineEndpoint{0, 1}, LineEndpoint{1, 1}};
  EXPECT_EQ(set.size(), 4U);
}

TEST(PendingMessagesTest, StartsEmpty) {
  PendingMessages pending(test_hash());
  expect_empty(pending);
  EXPECT_FALSE(pending.answer("x"));
  EXPECT_EQ(pending.drop_origin(kA), 0U);
  EXPECT_TRUE(pending.take_target(kA).empty());
  EXPECT_FALSE(pending.retarget(1, kB));
  EXPECT_FALSE(pending.drop(1));
  expect_empty(pending);
}

TEST(PendingMessagesTest, AnswerReturnsTheEntryOnce) {
  PendingMessages pending(test_hash());
  const std::uint64_t seq = pending.add("hello", kA, kB);
  EXPECT_EQ(pending.size(), 1U);
  EXPECT_EQ(pending.bytes(), 5U);
  const std::optional<Answered> answered = pending.answer("hello");
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->seq, seq);
  EXPECT_EQ(answered->origin, kA);
  EXPECT_EQ(answered->target, kB);
  EXPECT_FALSE(pending.answer("hello"));
  expect_empty(pending);
}

TEST(PendingMessagesTest, SequenceNumbersFollowAddOrder) {
  PendingMessages pending(test_hash());
  EXPECT_EQ(pending.add("a", kA, kB), 1U);
  EXPECT_EQ(pending.add("b", kA, kB), 2U);
  ASSERT_TRUE(pending.answer("a"));
  EXPECT_EQ(pending.add("a", kA, kB), 3U);  // never reused
}

TEST(PendingMessagesTest, UnmatchedOkChangesNothing) {
  PendingMessages pending(test_hash());
  pending.add("x", kA, kB);
  EXPECT_FALSE(pending.answer("y"));
  EXPECT_FALSE(pending.answer("x "));
  EXPECT_FALSE(pending.answer(""));
  EXPECT_EQ(pending.size(), 1U);
  EXPECT_TRUE(pending.answer("x"));
}

TEST(PendingMessagesTest, XIsMatchedByEveryByte) {
  PendingMessages pending(test_hash());
  const std::string binary("a\0b\xff", 4);
  const std::uint64_t seq = pending.add(binary, kA, kB);
  pending.add("a", kA, kB);
  EXPECT_EQ(pending.bytes(), 5U);
  const std::optional<Answered> answered = pending.answer(binary);
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->seq, seq);
}

TEST(PendingMessagesTest, DuplicateXIsAnsweredOldestFirst) {
  PendingMessages pending(test_hash());
  const std::uint64_t first = pending.add("x", kA, kC);
  const std::uint64_t other = pending.add("y", kD, kC);
  const std::uint64_t second = pending.add("x", kB, kD);
  const std::uint64_t third = pending.add("x", kA, kA);
  EXPECT_EQ(pending.bytes(), 2U);  // "x" is held once
  EXPECT_EQ(pending.answer("x")->seq, first);
  EXPECT_EQ(pending.answer("x")->seq, second);
  EXPECT_EQ(pending.answer("x")->seq, third);
  EXPECT_FALSE(pending.answer("x"));
  EXPECT_EQ(pending.answer("y")->seq, other);
  expect_empty(pending);
}

TEST(PendingMessagesTest, DropOriginDropsOnlyItsEntries) {
  PendingMessages pending(test_hash());
  pending.add("x", kA, kC);
  const std::uint64_t b_x = pending.add("x", kB, kC);
  pending.add("only-a", kA, kB);
  const std::uint64_t same_conn_other_shard = pending.add("z", LineEndpoint{1, 1}, kC);
  EXPECT_EQ(pending.drop_origin(kA), 2U);
  EXPECT_EQ(pending.size(), 2U);
  EXPECT_EQ(pending.bytes(), 2U);  // "x" and "z"
  EXPECT_FALSE(pending.answer("only-a"));
  EXPECT_EQ(pending.answer("x")->seq, b_x);
  EXPECT_EQ(pending.drop_origin(kA), 0U);
  EXPECT_EQ(pending.answer("z")->seq, same_conn_other_shard);
  expect_empty(pending);
}

TEST(PendingMessagesTest, DropOriginLeavesTargetsConsistent) {
  PendingMessages pending(test_hash());
  pending.add("x", kA, kC);
  const std::uint64_t kept = pending.add("y", kB, kC);
  EXPECT_EQ(pending.drop_origin(kA), 1U);
  const std::vector<Orphan> orphans = pending.take_target(kC);
  ASSERT_EQ(orphans.size(), 1U);
  EXPECT_EQ(orphans[0].seq, kept);
  EXPECT_EQ(orphans[0].x, "y");
}

TEST(PendingMessagesTest, TakeTargetHandsBackItsEntries) {
  PendingMessages pending(test_hash());
  const std::uint64_t one = pending.add("one", kA, kC);
  pending.add("two", kA, kD);
  const std::uint64_t three = pending.add("three", kB, kC);
  const std::vector<Orphan> orphans = pending.take_target(kC);
  ASSERT_EQ(orphans.size(), 2U);
  EXPECT_EQ(orphans[0].seq, one);
  EXPECT_EQ(orphans[0].x, "one");
  EXPECT_EQ(orphans[1].seq, three);
  EXPECT_EQ(orphans[1].x, "three");
  EXPECT_EQ(pending.size(), 3U);  // still pending until retargeted or dropped
  EXPECT_EQ(pending.index_sizes().targets, 1U);
  EXPECT_TRUE(pending.take_target(kC).empty());

  EXPECT_TRUE(pending.retarget(one, kB));
  EXPECT_TRUE(pending.retarget(three, kB));
  EXPECT_EQ(seqs_of(pending.take_target(kB)), (std::vector<std::uint64_t>{one, three}));
  EXPECT_TRUE(pending.drop(one));
  EXPECT_TRUE(pending.drop(three));
  EXPECT_FALSE(pending.drop(one));
  EXPECT_FALSE(pending.retarget(three, kA));
  EXPECT_EQ(pending.size(), 1U);
  EXPECT_EQ(pending.drop_origin(kA), 1U);
  expect_empty(pending);
}

TEST(PendingMessagesTest, RetargetedEntryKeepsItsAge) {
  PendingMessages pending(test_hash());
  const std::uint64_t older = pending.add("x", kA, kC);
  const std::uint64_t newer = pending.add("x", kB, kD);
  const std::vector<Orphan> orphans = pending.take_target(kC);
  ASSERT_EQ(seqs_of(orphans), (std::vector<std::uint64_t>{older}));
  EXPECT_TRUE(pending.retarget(older, kB));

  std::optional<Answered> answered = pending.answer("x");
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->seq, older);
  EXPECT_EQ(answered->origin, kA);
  EXPECT_EQ(answered->target, kB);
  answered = pending.answer("x");
  ASSERT_TRUE(answered);
  EXPECT_EQ(answered->seq, newer);
  expect_empty(pending);
}

TEST(PendingMessagesTest, RetargetMovesBetweenLiveTargets) {
  PendingMessages pending(test_hash());
  const std::uint64_t seq = pending.add("x", kA, kC);
  EXPECT_TRUE(pending.retarget(seq, kD));  // no take_target first
  EXPECT_TRUE(pending.take_target(kC).empty());
  EXPECT_EQ(seqs_of(pending.take_target(kD)), (std::vector<std::uint64_t>{seq}));
}

TEST(PendingMessagesTest, AnOrphanCanBeAnsweredBeforeItIsRetargeted) {
  PendingMessages pending(test_hash());
  const std::uint64_t older = pending.add("x", kA, kC);
  const std::uint64_t newer = pending.add("x", kB, kD);
  ASSERT_EQ(pending.take_target(kC).size(), 1U);
  EXPECT_EQ(pending.answer("x")->seq, older);  // oldest first, orphan or not
  EXPECT_FALSE(pending.retarget(older, kB));   // so it must not be forwarded again
  EXPECT_EQ(pending.answer("x")->seq, newer);
  expect_empty(pending);
}

TEST(PendingMessagesTest, OriginGoneWhileItsMessageIsOrphaned) {
  PendingMessages pending(test_hash());
  const std::uint64_t seq = pending.add("x", kA, kC);
  const std::vector<Orphan> orphans = pending.take_target(kC);
  ASSERT_EQ(orphans.size(), 1U);
  EXPECT_EQ(pending.drop_origin(kA), 1U);
  EXPECT_FALSE(pending.retarget(seq, kB));
  expect_empty(pending);
}

TEST(PendingMessagesTest, MessageToItselfIsDroppedWithTheConnection) {
  PendingMessages pending(test_hash());
  pending.add("x", kA, kA);
  const std::uint64_t to_a = pending.add("y", kB, kA);
  EXPECT_EQ(pending.drop_origin(kA), 1U);
  EXPECT_EQ(seqs_of(pending.take_target(kA)), (std::vector<std::uint64_t>{to_a}));
}

TEST(PendingMessagesTest, EveryTableEmptiesWhateverTheOrder) {
  PendingMessages pending(test_hash());
  const std::uint64_t a = pending.add("x", kA, kB);
  const std::uint64_t b = pending.add("y", kB, kC);
  pending.add("x", kC, kD);
  pending.add("z", kD, kA);
  EXPECT_TRUE(pending.drop(a));
  ASSERT_EQ(pending.take_target(kC).size(), 1U);
  EXPECT_TRUE(pending.drop(b));
  EXPECT_TRUE(pending.answer("x"));
  EXPECT_EQ(pending.drop_origin(kD), 1U);
  expect_empty(pending);
}

// A plain model of the same contract: a vector in age order, searched linearly.
struct ModelEntry {
  std::uint64_t seq;
  std::string x;
  LineEndpoint origin;
  LineEndpoint target;
  bool orphan = false;
};

class Model {
 public:
  void add(std::uint64_t seq, const std::string& x, LineEndpoint origin, LineEndpoint target) {
    entries_.push_back({seq, x, origin, target});
  }
  std::optional<Answered> answer(const std::string& x) {
    const auto it =
        std::find_if(entries_.begin(), entries_.end(), [&](const ModelEntry& e) { return e.x == x; });
    if (it == entries_.end()) {
      return std::nullopt;
    }
    const Answered answered{it->seq, it->origin, it->target};
    entries_.erase(it);
    return answered;
  }
  std::size_t drop_origin(LineEndpoint origin) {
    return std::erase_if(entries_, [&](const ModelEntry& e) { return e.origin == origin; });
  }
  std::vector<std::uint64_t> take_target(LineEndpoint target) {
    std::vector<std::uint64_t> seqs;
    for (ModelEntry& e : entries_) {
      if (!e.orphan && e.target == target) {
        e.orphan = true;
        seqs.push_back(e.seq);
      }
    }
    return seqs;
  }
  bool retarget(std::uint64_t seq, LineEndpoint target) {
    ModelEntry* e = find(seq);
    if (e != nullptr) {
      e->orphan = false;
      e->target = target;
    }
    return e != nullptr;
  }
  bool drop(std::uint64_t seq) {
    return std::erase_if(entries_, [&](const ModelEntry& e) { return e.seq == seq; }) == 1;
  }
  std::size_t size() const { return entries_.size(); }
  std::size_t bytes() const {
    std::set<std::string> xs;
    std::size_t bytes = 0;
    for (const ModelEntry& e : entries_) {
      if (xs.insert(e.x).second) {
        bytes += e.x.size();
      }
    }
    return bytes;
  }
  std::string x_of(std::uint64_t seq) { return find(seq)->x; }

 private:
  ModelEntry* find(std::uint64_t seq) {
    const auto it =
        std::find_if(entries_.begin(), entries_.end(), [&](const ModelEntry& e) { return e.seq == seq; });
    return it == entries_.end() ? nullptr : &*it;
  }

  std::vector<ModelEntry> entries_;
};

TEST(PendingMessagesTest, RandomInterleavingsMatchTheModel) {
  std::mt19937 rng(20240601);  // fixed: the run is the same every time
  const std::vector<std::string> xs = {"a", "b", "a b", "longer payload", std::string("\0\xff", 2)};
  std::vector<LineEndpoint> endpoints;
  for (std::uint32_t shard = 0; shard < 2; ++shard) {
    for (std::uint64_t conn = 1; conn <= 4; ++conn) {
      endpoints.push_back({shard, conn});
    }
  }
  auto pick = [&](const auto& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };

  PendingMessages pending(test_hash());
  Model model;
  std::vector<std::uint64_t> orphans;  // handed back, not yet retargeted or dropped
  for (int step = 0; step < 20000; ++step) {
    const int op = std::uniform_int_distribution<int>(0, 99)(rng);
    if (op < 40) {
      const std::string x = pick(xs);
      const LineEndpoint origin = pick(endpoints);
      const LineEndpoint target = pick(endpoints);
      model.add(pending.add(x, origin, target), x, origin, target);
    } else if (op < 65) {
      const std::string x = pick(xs);
      const std::optional<Answered> got = pending.answer(x);
      const std::optional<Answered> want = model.answer(x);
      ASSERT_EQ(got.has_value(), want.has_value()) << step;
      if (got) {
        EXPECT_EQ(got->seq, want->seq) << step;
        EXPECT_EQ(got->origin, want->origin) << step;
        EXPECT_EQ(got->target, want->target) << step;
      }
    } else if (op < 72) {
      const LineEndpoint origin = pick(endpoints);
      ASSERT_EQ(pending.drop_origin(origin), model.drop_origin(origin)) << step;
    } else if (op < 82) {
      const LineEndpoint target = pick(endpoints);
      const std::vector<Orphan> got = pending.take_target(target);
      std::vector<std::uint64_t> got_seqs = seqs_of(got);
      std::sort(got_seqs.begin(), got_seqs.end());
      ASSERT_EQ(got_seqs, model.take_target(target)) << step;
      for (const Orphan& o : got) {
        EXPECT_EQ(o.x, model.x_of(o.seq)) << step;
        orphans.push_back(o.seq);
      }
    } else if (!orphans.empty()) {
      const std::size_t i = std::uniform_int_distribution<std::size_t>(0, orphans.size() - 1)(rng);
      const std::uint64_t seq = orphans[i];
      orphans.erase(orphans.begin() + static_cast<std::ptrdiff_t>(i));
      if (op < 95) {
        const LineEndpoint target = pick(endpoints);
        ASSERT_EQ(pending.retarget(seq, target), model.retarget(seq, target)) << step;
      } else {
        ASSERT_EQ(pending.drop(seq), model.drop(seq)) << step;
      }
    }
    ASSERT_EQ(pending.size(), model.size()) << step;
    ASSERT_EQ(pending.bytes(), model.bytes()) << step;
  }
  for (const LineEndpoint& e : endpoints) {
    EXPECT_EQ(pending.drop_origin(e), model.drop_origin(e));
  }
  expect_empty(pending);
}

// 100k entries in the shapes that would be quadratic with a linear search: one X shared by every
// entry, one target holding every entry, and 100k origins with one entry each.
TEST(PendingMessagesTest, HundredThousandEntries) {
  constexpr std::uint64_t kCount = 100'000;
  PendingMessages pending(test_hash());
  std::vector<std::uint64_t> seqs;
  seqs.reserve(kCount);
  for (std::uint64_t i = 0; i < kCount; ++i) {
    seqs.push_back(pending.add("same", LineEndpoint{0, i}, kA));
  }
  EXPECT_EQ(pending.size(), kCount);
  EXPECT_EQ(pending.bytes(), 4U);

  const std::vector<Orphan> orphans = pending.take_target(kA);
  ASSERT_EQ(orphans.size(), kCount);
  for (std::uint64_t i = 0; i < kCount; ++i) {
    ASSERT_TRUE(pending.retarget(orphans[i].seq, LineEndpoint{1, i % 1000}));
  }
  for (std::uint64_t i = 0; i < kCount / 2; ++i) {
    const std::optional<Answered> answered = pending.answer("same");
    ASSERT_TRUE(answered);
    ASSERT_EQ(answered->seq, seqs[i]);
  }
  for (std::uint64_t i = kCount / 2; i < kCount; ++i) {
    ASSERT_EQ(pending.drop_origin(LineEndpoint{0, i}), 1U);
  }
  expect_empty(pending);

  for (std::uint64_t i = 0; i < kCount; ++i) {
    pending.add(std::to_string(i), LineEndpoint{0, i % 7}, LineEndpoint{1, i % 13});
  }
  for (std::uint64_t t = 0; t < 13; ++t) {
    for (const Orphan& o : pending.take_target(LineEndpoint{1, t})) {
      ASSERT_TRUE(pending.drop(o.seq));
    }
  }
  expect_empty(pending);
}

// X values a client built offline to share one bucket of the X table under the old std::hash: with the
// keyed hash they spread over the buckets, so add and answer stay O(1) instead of walking a chain of
// every pending X.
TEST(PendingMessagesTest, XsAimedAtOneStdHashBucketSpreadOut) {
  constexpr std::size_t kXs = 2000;
  // The bucket count a table of kXs strings grows to: what by_x_ has once kXs X values are pending.
  std::unordered_map<std::string, int> sized;
  for (std::size_t i = 0; i < kXs; ++i) {
    sized.emplace(std::to_string(i), 0);
  }
  const std::size_t buckets = sized.bucket_count();
  const std::vector<std::string> xs = std_hash_collisions(kXs, buckets);

  std::unordered_map<std::string, int> unkeyed;  // the table as it was: std::hash
  PendingMessages pending(test_hash());
  for (const std::string& x : xs) {
    unkeyed.emplace(x, 0);
    pending.add(x, kA, kB);
  }
  ASSERT_EQ(unkeyed.bucket_count(), buckets);
  EXPECT_EQ(unkeyed.bucket_size(unkeyed.bucket(xs[0])), kXs);  // the attack works on std::hash
  const PendingMessages::IndexSizes sizes = pending.index_sizes();
  EXPECT_EQ(sizes.xs, kXs);
  // About one X per bucket: a random hash's fullest bucket holds a handful, never a chain of kXs.
  EXPECT_LE(sizes.longest_x_bucket, 16U);
  EXPECT_EQ(pending.drop_origin(kA), kXs);
  expect_empty(pending);
}

}  // namespace
}  // namespace ringhub
