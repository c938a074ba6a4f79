// Tests for core/shared_block: HeapBlock allocation and its memory accounting, BlockRef
// copy/move/reset reference counting, and a custom SharedBlock whose release fn must run exactly once,
// at the last drop.
#include "core/shared_block.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace ringhub {
namespace {

// A block over caller-owned bytes whose release only counts calls.
struct CountingBlock {
  static void release(SharedBlock* block) { ++*static_cast<int*>(block->owner()); }

  explicit CountingBlock(std::uint32_t size) : bytes(size), block(bytes.data(), size, &release, &releases) {}

  std::vector<std::uint8_t> bytes;
  int releases = 0;
  SharedBlock block;
};

// What a fully charged block of `size` bytes costs, as a signed account figure.
std::int64_t cost(std::uint32_t size) {
  return static_cast<std::int64_t>(HeapBlock::footprint(size));
}

TEST(HeapBlockTest, CreateChargesItsFootprintAndLastReleaseReturnsIt) {
  MemoryAccount in_use;
  {
    BlockRef a = HeapBlock::create(100, &in_use);
    ASSERT_TRUE(a);
    EXPECT_EQ(in_use.bytes(), cost(100));
    EXPECT_EQ(a->capacity(), 100U);
    EXPECT_EQ(a->refs(), 1U);
    BlockRef b = HeapBlock::create(28, &in_use);
    ASSERT_TRUE(b);
    EXPECT_EQ(in_use.bytes(), cost(100) + cost(28));
    b.reset();
    EXPECT_EQ(in_use.bytes(), cost(100));
  }
  EXPECT_EQ(in_use.bytes(), 0);
}

// The footprint is what malloc hands out: header, bytes and malloc's own word, in 16-byte steps, so a
// 24-byte reply is charged as the 80 bytes it really takes.
TEST(HeapBlockTest, FootprintCountsHeaderAndMallocRounding) {
  EXPECT_EQ(HeapBlock::footprint(24), 80U);
  EXPECT_EQ(HeapBlock::footprint(0), 64U);
  EXPECT_EQ(HeapBlock::footprint(1U << 20), (std::size_t{1} << 20) + 64U);
  EXPECT_GE(HeapBlock::footprint(100), 100 + HeapBlock::kHeaderBytes);
}

// A block made for a frame that arrives over time is charged as its bytes arrive.
TEST(HeapBlockTest, PartialChargeGrowsAndNeverShrinks) {
  MemoryAccount in_use;
  BlockRef block = HeapBlock::create(1U << 20, &in_use, 100);
  EXPECT_EQ(in_use.bytes(), cost(100));
  HeapBlock::charge_up_to(*block.get(), 5000);
  EXPECT_EQ(in_use.bytes(), cost(5000));
  HeapBlock::charge_up_to(*block.get(), 10);  // never lowers
  EXPECT_EQ(in_use.bytes(), cost(5000));
  HeapBlock::charge_up_to(*block.get(), UINT32_MAX);  // capped at the capacity
  EXPECT_EQ(in_use.bytes(), cost(1U << 20));
  block.reset();
  EXPECT_EQ(in_use.bytes(), 0);
}

TEST(HeapBlockTest, BytesAreWritableAndSurviveWhileReferenced) {
  MemoryAccount in_use;
  BlockRef a = HeapBlock::create(4096, &in_use);
  ASSERT_TRUE(a);
  std::memset(a.data(), 0xAB, 4096);
  BlockRef b = a;
  a.reset();
  EXPECT_EQ(in_use.bytes(), cost(4096));  // b still holds it
  ASSERT_TRUE(b);
  EXPECT_EQ(b.data()[0], 0xAB);
  EXPECT_EQ(b.data()[4095], 0xAB);
  b.reset();
  EXPECT_EQ(in_use.bytes(), 0);
}

TEST(HeapBlockTest, DataIsSixteenByteAligned) {
  BlockRef a = HeapBlock::create(3);
  ASSERT_TRUE(a);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % 16, 0U);
}

TEST(HeapBlockTest, WorksWithoutACounter) {
  BlockRef a = HeapBlock::create(16);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->capacity(), 16U);
  EXPECT_EQ(a->owner(), nullptr);
}

TEST(HeapBlockTest, LastReleaseOfManyCopiesFreesOnce) {
  MemoryAccount in_use;
  std::vector<BlockRef> refs;
  refs.push_back(HeapBlock::create(64, &in_use));
  for (int i = 0; i < 50; ++i) {
    refs.push_back(refs.back());
  }
  EXPECT_EQ(refs.front()->refs(), 51U);
  while (refs.size() > 1) {
    refs.pop_back();
    EXPECT_EQ(in_use.bytes(), cost(64));
  }
  EXPECT_EQ(refs.front()->refs(), 1U);
  refs.clear();
  EXPECT_EQ(in_use.bytes(), 0);
}

TEST(BlockRefTest, DefaultIsEmpty) {
  BlockRef ref;
  EXPECT_FALSE(ref);
  EXPECT_EQ(ref.get(), nullptr);
  ref.reset();  // no-op on an empty ref
  EXPECT_FALSE(ref);
}

TEST(BlockRefTest, ConstructFromNullIsEmpty) {
  BlockRef ref(nullptr);
  EXPECT_FALSE(ref);
}

TEST(BlockRefTest, CopyAddsAReference) {
  CountingBlock cb(8);
  {
    BlockRef a(&cb.block);
    EXPECT_EQ(cb.block.refs(), 1U);
    BlockRef b(a);  // NOLINT(performance-unnecessary-copy-initialization): the copy is what is tested
    EXPECT_EQ(cb.block.refs(), 2U);
    EXPECT_EQ(a.get(), b.get());
    BlockRef c;
    c = b;
    EXPECT_EQ(cb.block.refs(), 3U);
    EXPECT_EQ(c.get(), &cb.block);
  }
  EXPECT_EQ(cb.block.refs(), 0U);
  EXPECT_EQ(cb.releases, 1);
}

TEST(BlockRefTest, MoveTransfersWithoutCounting) {
  CountingBlock cb(8);
  BlockRef a(&cb.block);
  BlockRef b(std::move(a));
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is specified empty
  EXPECT_EQ(b.get(), &cb.block);
  EXPECT_EQ(cb.block.refs(), 1U);
  BlockRef c;
  c = std::move(b);
  EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(cb.block.refs(), 1U);
  EXPECT_EQ(cb.releases, 0);
  c.reset();
  EXPECT_EQ(cb.releases, 1);
}

TEST(BlockRefTest, AssignmentDropsThePreviousBlock) {
  CountingBlock first(4);
  CountingBlock second(4);
  BlockRef a(&first.block);
  BlockRef b(&second.block);
  a = b;
  EXPECT_EQ(first.releases, 1);
  EXPECT_EQ(first.block.refs(), 0U);
  EXPECT_EQ(second.block.refs(), 2U);
  a = BlockRef();
  EXPECT_EQ(second.block.refs(), 1U);
  EXPECT_EQ(second.releases, 0);
}

TEST(BlockRefTest, SelfAssignmentKeepsTheCount) {
  CountingBlock cb(4);
  BlockRef a(&cb.block);
  BlockRef& alias = a;
  a = alias;
  EXPECT_EQ(cb.block.refs(), 1U);
  EXPECT_EQ(cb.releases, 0);
  EXPECT_EQ(a.get(), &cb.block);
}

TEST(BlockRefTest, ResetDropsOneReferenceAndEmpties) {
  CountingBlock cb(4);
  BlockRef a(&cb.block);
  BlockRef b(a);
  a.reset();
  EXPECT_FALSE(a);
  EXPECT_EQ(cb.block.refs(), 1U);
  EXPECT_EQ(cb.releases, 0);
  a.reset();  // twice is harmless
  EXPECT_EQ(cb.block.refs(), 1U);
  b.reset();
  EXPECT_EQ(cb.releases, 1);
}

TEST(BlockRefTest, DataPointsAtTheBlockBytes) {
  CountingBlock cb(4);
  BlockRef a(&cb.block);
  EXPECT_EQ(a.data(), cb.bytes.data());
  EXPECT_EQ(a->data(), cb.bytes.data());
  EXPECT_EQ(a->capacity(), 4U);
  EXPECT_EQ(a->owner(), &cb.releases);
}

TEST(SharedBlockTest, ReleaseRunsExactlyOnceAtTheLastDrop) {
  CountingBlock cb(16);
  std::vector<BlockRef> refs;
  refs.reserve(10);
  for (int i = 0; i < 10; ++i) {
    refs.emplace_back(&cb.block);
  }
  EXPECT_EQ(cb.block.refs(), 10U);
  for (int i = 0; i < 9; ++i) {
    refs.pop_back();
    EXPECT_EQ(cb.releases, 0);
  }
  refs.pop_back();
  EXPECT_EQ(cb.releases, 1);
  EXPECT_EQ(cb.block.refs(), 0U);
}

TEST(SharedBlockTest, PooledBlockCanLiveAgainAfterRelease) {
  // A pool reuses one SharedBlock object: after its release it is reset and referenced again.
  CountingBlock cb(16);
  std::vector<std::uint8_t> other(32);
  { BlockRef a(&cb.block); }
  EXPECT_EQ(cb.releases, 1);
  cb.block.reset(other.data(), 32);
  {
    BlockRef a(&cb.block);
    EXPECT_EQ(a.data(), other.data());
    EXPECT_EQ(a->capacity(), 32U);
    EXPECT_EQ(a->refs(), 1U);
  }
  EXPECT_EQ(cb.releases, 2);
}

TEST(SharedBlockTest, ManualAddAndDropRef) {
  CountingBlock cb(4);
  cb.block.add_ref();
  cb.block.add_ref();
  cb.block.drop_ref();
  EXPECT_EQ(cb.releases, 0);
  EXPECT_EQ(cb.block.refs(), 1U);
  cb.block.drop_ref();
  EXPECT_EQ(cb.releases, 1);
}

}  // namespace
}  // namespace ringhub
