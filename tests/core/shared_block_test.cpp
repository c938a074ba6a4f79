// Tests for core/shared_block: HeapBlock allocation and its bytes_in_use accounting, BlockRef
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

TEST(HeapBlockTest, CreateRaisesBytesInUseAndLastReleaseLowersIt) {
  std::uint64_t in_use = 0;
  {
    BlockRef a = HeapBlock::create(100, &in_use);
    ASSERT_TRUE(a);
    EXPECT_EQ(in_use, 100U);
    EXPECT_EQ(a->capacity(), 100U);
    EXPECT_EQ(a->refs(), 1U);
    BlockRef b = HeapBlock::create(28, &in_use);
    ASSERT_TRUE(b);
    EXPECT_EQ(in_use, 128U);
    b.reset();
    EXPECT_EQ(in_use, 100U);
  }
  EXPECT_EQ(in_use, 0U);
}

TEST(HeapBlockTest, BytesAreWritableAndSurviveWhileReferenced) {
  std::uint64_t in_use = 0;
  BlockRef a = HeapBlock::create(4096, &in_use);
  ASSERT_TRUE(a);
  std::memset(a.data(), 0xAB, 4096);
  BlockRef b = a;
  a.reset();
  EXPECT_EQ(in_use, 4096U);  // b still holds it
  ASSERT_TRUE(b);
  EXPECT_EQ(b.data()[0], 0xAB);
  EXPECT_EQ(b.data()[4095], 0xAB);
  b.reset();
  EXPECT_EQ(in_use, 0U);
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
  std::uint64_t in_use = 0;
  std::vector<BlockRef> refs;
  refs.push_back(HeapBlock::create(64, &in_use));
  for (int i = 0; i < 50; ++i) {
    refs.push_back(refs.back());
  }
  EXPECT_EQ(refs.front()->refs(), 51U);
  while (refs.size() > 1) {
    refs.pop_back();
    EXPECT_EQ(in_use, 64U);
  }
  EXPECT_EQ(refs.front()->refs(), 1U);
  refs.clear();
  EXPECT_EQ(in_use, 0U);
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
