// Tests for core/shared_block: HeapBlock allocation and its memory accounting, BlockRef
// copy/move/reset reference counting, and a custom SharedBlock whose release fn must run exactly once,
// at the last drop.
#include "core/shared_block.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
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

// The footprint is what malloc hands out: header and bytes asked for in a 16-byte size class, plus
// malloc's own word, in 16-byte steps, so a 24-byte reply is charged as the 96 bytes it really takes.
TEST(HeapBlockTest, FootprintCountsHeaderAndMallocRounding) {
  // 48 + 24 bytes are asked for as 80 (a 16-byte size class), which malloc hands out as 96.
  EXPECT_EQ(HeapBlock::footprint(24), 96U);
  EXPECT_EQ(HeapBlock::footprint(0), 64U);
  EXPECT_EQ(HeapBlock::footprint(1U << 20), (std::size_t{1} << 20) + 64U);
  EXPECT_GE(HeapBlock::footprint(100), 100 + HeapBlock::kHeaderBytes);
}

#if defined(__SANITIZE_ADDRESS__)
#define RINGHUB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RINGHUB_ASAN 1
#endif
#endif

// A freed small block waits in its thread's cache and is handed out again for a block of its size
// class (ASan builds go straight to malloc, so it can see a use after free).
TEST(HeapBlockTest, AFreedSmallBlockIsReusedForItsSizeClass) {
#ifdef RINGHUB_ASAN
  GTEST_SKIP() << "ASan build: small blocks are not cached";
#else
  MemoryAccount in_use;
  const std::uint8_t* first = nullptr;
  {
    const BlockRef block = HeapBlock::create(89, &in_use);
    ASSERT_TRUE(block);
    first = block.data();
  }
  EXPECT_EQ(in_use.bytes(), 0);
  const BlockRef same_class = HeapBlock::create(90, &in_use);  // 48 + 89 and 48 + 90 are both 144
  EXPECT_EQ(same_class.data(), first);
  EXPECT_EQ(in_use.bytes(), cost(90));
  const BlockRef other_class = HeapBlock::create(200, &in_use);
  EXPECT_NE(other_class.data(), first);
#endif
}

// The gauge of cached small blocks: a block freed on another thread shows in the sum while that thread
// lives, is taken out again when it reuses the block, and its whole share goes when it ends.
TEST(HeapBlockTest, SmallBlockCacheBytesSumEveryThreadsCache) {
#ifdef RINGHUB_ASAN
  GTEST_SKIP() << "ASan build: small blocks are not cached";
#else
  const std::uint64_t before = HeapBlock::small_block_cache_bytes();
  std::mutex mutex;
  std::condition_variable changed;
  int step = 0;  // 1: the worker freed its block; 2: main has looked; 3: reused; 4: main looked again
  auto wait_for = [&](int value) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return step == value; });
  };
  auto advance = [&] {
    const std::lock_guard lock(mutex);
    ++step;
    changed.notify_all();
  };
  std::thread worker([&] {
    HeapBlock::create(200);  // made and freed at once: 48 + 200 bytes wait in this thread's cache
    advance();
    wait_for(2);
    const BlockRef reused = HeapBlock::create(200);
    advance();
    wait_for(4);
  });
  wait_for(1);
  EXPECT_EQ(HeapBlock::small_block_cache_bytes(), before + 256) << "48 + 200 bytes in their 16-byte class";
  advance();
  wait_for(3);
  EXPECT_EQ(HeapBlock::small_block_cache_bytes(), before);
  advance();
  worker.join();  // the reused block was freed into the cache, and the thread's end took it all away
  EXPECT_EQ(HeapBlock::small_block_cache_bytes(), before);
#endif
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
