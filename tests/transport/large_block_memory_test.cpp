// Tests for LargeBlockMemory: size classes, charges by the page and by the class, reuse through the
// bounded cache, and that freed blocks beyond the cache leave the process's resident memory.
#include "transport/large_block_memory.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "core/memory_account.hpp"
#include "core/shared_block.hpp"
#include "transport/tsan_annotations.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(RINGHUB_TSAN_ENABLED)
#define RINGHUB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RINGHUB_SANITIZED 1
#endif
#endif

namespace ringhub {
namespace {

// A sanitizer's shadow memory grows and stays with what the test maps, so resident memory says
// nothing there; the mapped count (what this memory holds from the kernel) is checked everywhere.
#ifdef RINGHUB_SANITIZED
constexpr bool kResidentMeaningful = false;
#else
constexpr bool kResidentMeaningful = true;
#endif

constexpr std::size_t kPage = 4096;
constexpr std::size_t kMiB = std::size_t{1} << 20;

class LargeBlockMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override { LargeBlockMemory::install(); }
};

std::size_t resident_bytes() {
  long pages = 0;
  long resident = 0;
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) {
    return 0;
  }
  const int read = std::fscanf(statm, "%ld %ld", &pages, &resident);
  std::fclose(statm);
  return read == 2 ? static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

TEST(LargeBlockSizeClassTest, ClassesHoldTheRequestInWholePagesWithinOneSixteenth) {
  for (std::size_t bytes = LargeBlockMemory::kMinBytes; bytes < 4 * kMiB; bytes += 4093) {
    const std::size_t granted = LargeBlockMemory::size_class(bytes);
    EXPECT_GE(granted, bytes);
    EXPECT_EQ(granted % kPage, 0U) << bytes;
    EXPECT_LE(granted - bytes, bytes / LargeBlockMemory::kClassesPerDoubling + kPage) << bytes;
  }
  EXPECT_EQ(LargeBlockMemory::size_class(kMiB), kMiB);
  EXPECT_EQ(LargeBlockMemory::size_class(kMiB + 1), kMiB + kMiB / 16);
}

TEST_F(LargeBlockMemoryTest, AFullBlockIsChargedItsClassAndAPartOneByThePage) {
  MemoryAccount account;
  const auto size = static_cast<std::uint32_t>(kMiB + 8);
  const std::size_t granted = LargeBlockMemory::size_class(HeapBlock::kHeaderBytes + size);
  EXPECT_EQ(HeapBlock::footprint(size), granted);
  {
    BlockRef block = HeapBlock::create(size, &account, 100);
    ASSERT_TRUE(block);
    EXPECT_EQ(account.bytes(), static_cast<std::int64_t>(kPage));
    HeapBlock::charge_up_to(*block.get(), 3 * kPage);
    EXPECT_EQ(account.bytes(), static_cast<std::int64_t>(4 * kPage));  // the header spills into a 4th
    HeapBlock::charge_up_to(*block.get(), size);
    EXPECT_EQ(account.bytes(), static_cast<std::int64_t>(granted));
  }
  EXPECT_EQ(account.bytes(), 0);
}

TEST_F(LargeBlockMemoryTest, SmallBlocksStillComeFromMalloc) {
  MemoryAccount account;
  const BlockRef block = HeapBlock::create(1000, &account);
  EXPECT_EQ(account.bytes(), static_cast<std::int64_t>(HeapBlock::footprint(1000)));
  EXPECT_LE(account.bytes(),
            static_cast<std::int64_t>(malloc_footprint(HeapBlock::kHeaderBytes + 1000) + 16));
}

TEST_F(LargeBlockMemoryTest, AFreedBlockIsCachedAndReusedForItsClass) {
  const std::uint32_t size = 300U << 10;
  const std::size_t granted = LargeBlockMemory::size_class(HeapBlock::kHeaderBytes + size);
  const std::uint64_t cached_before = LargeBlockMemory::cached_bytes();
  std::uint8_t* first = nullptr;
  {
    const BlockRef block = HeapBlock::create(size);
    ASSERT_TRUE(block);
    first = block.data();
    std::memset(block.data(), 0x5a, size);
  }
  EXPECT_EQ(LargeBlockMemory::cached_bytes(), cached_before + granted);
  const BlockRef again = HeapBlock::create(size - 100);  // the same class
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(LargeBlockMemory::cached_bytes(), cached_before);
}

TEST_F(LargeBlockMemoryTest, ReleasingTheCacheUnmapsEveryCachedBlock) {
  {
    const BlockRef a = HeapBlock::create(200U << 10);
    const BlockRef b = HeapBlock::create(500U << 10);
  }
  ASSERT_GT(LargeBlockMemory::cached_bytes(), 0U);
  const std::uint64_t mapped_before = LargeBlockMemory::mapped_bytes();
  const std::uint64_t cached_before = LargeBlockMemory::cached_bytes();
  LargeBlockMemory::release_cache();
  EXPECT_EQ(LargeBlockMemory::cached_bytes(), 0U);
  EXPECT_EQ(LargeBlockMemory::mapped_bytes(), mapped_before - cached_before);
}

TEST_F(LargeBlockMemoryTest, FreedBlocksBeyondTheCacheLeaveResidentMemory) {
  constexpr std::size_t kBlocks = 256;  // 256 MiB, eight times the cache
  const std::size_t before = resident_bytes();
  ASSERT_GT(before, 0U) << "no /proc/self/statm";
  {
    std::vector<BlockRef> blocks;
    blocks.reserve(kBlocks);
    for (std::size_t i = 0; i < kBlocks; ++i) {
      blocks.push_back(HeapBlock::create(static_cast<std::uint32_t>(kMiB)));
      ASSERT_TRUE(blocks.back());
      std::memset(blocks.back().data(), 1, kMiB);  // resident now
    }
    if (kResidentMeaningful) {
      EXPECT_GE(resident_bytes(), before + kBlocks * kMiB * 9 / 10);
    }
    EXPECT_GE(LargeBlockMemory::mapped_bytes(), kBlocks * kMiB);
  }
  EXPECT_LE(LargeBlockMemory::cached_bytes(), LargeBlockMemory::kCacheLimitBytes);
  if (kResidentMeaningful) {
    EXPECT_LE(resident_bytes(), before + LargeBlockMemory::kCacheLimitBytes + 4 * kMiB);
  }
  EXPECT_LE(LargeBlockMemory::mapped_bytes(), LargeBlockMemory::kCacheLimitBytes);
}

}  // namespace
}  // namespace ringhub
