// Tests for core/outbound_queue: iovecs over queued slices (limits, partial consumes, placeholders that
// hold request order), block references released exactly when their slice is sent or dropped, the
// `keep` hand-off, truncate_after/clear, ring growth and release, and the memory the queue is charged.
#include "core/outbound_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <span>
#include <vector>

#include "core/shared_block.hpp"

// Counts live operator new[] allocations: the queue's slice ring is the only array allocation the
// tests below make between two readings, so the count shows when the ring is freed.
namespace {
std::size_t g_live_array_allocations = 0;
}  // namespace

void* operator new[](std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  ++g_live_array_allocations;
  return p;
}
void operator delete[](void* p) noexcept {
  if (p != nullptr) {
    --g_live_array_allocations;
    std::free(p);
  }
}
void operator delete[](void* p, std::size_t) noexcept {
  operator delete[](p);
}

namespace ringhub {
namespace {

// A heap block of `size` bytes where byte i is `seed + i` (mod 256).
BlockRef make_block(std::uint32_t size, std::uint8_t seed, MemoryAccount* in_use = nullptr) {
  BlockRef block = HeapBlock::create(size, in_use);
  for (std::uint32_t i = 0; i < size; ++i) {
    block.data()[i] = static_cast<std::uint8_t>(seed + i);
  }
  return block;
}

// A block over test-owned bytes whose release counts calls.
struct CountingBlock {
  static void release(SharedBlock* block) { ++*static_cast<int*>(block->owner()); }

  explicit CountingBlock(std::uint32_t size) : bytes(size), block(bytes.data(), size, &release, &releases) {
    for (std::uint32_t i = 0; i < size; ++i) {
      bytes[i] = static_cast<std::uint8_t>(i);
    }
  }

  std::vector<std::uint8_t> bytes;
  int releases = 0;
  SharedBlock block;
};

std::vector<std::uint8_t> gather(const iovec* iov, std::size_t count) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < count; ++i) {
    const auto* p = static_cast<const std::uint8_t*>(iov[i].iov_base);
    out.insert(out.end(), p, p + iov[i].iov_len);
  }
  return out;
}

std::size_t total_len(const iovec* iov, std::size_t count) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < count; ++i) {
    n += iov[i].iov_len;
  }
  return n;
}

constexpr std::size_t kNoByteLimit = SIZE_MAX;

// Every connection holds one, idle or not. The eighth word caches the tail's append room, which each
// delivery read from the tail's block twice (K=16 64 B: about 4% of the hub's time).
TEST(OutboundQueueTest, IdleQueueIsEightWords) {
  EXPECT_LE(sizeof(OutboundQueue), 8 * sizeof(void*));
}

TEST(OutboundQueueTest, StartsEmpty) {
  OutboundQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.slice_count(), 0U);
  EXPECT_EQ(q.queued_bytes(), 0U);
  iovec iov[4];
  EXPECT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 0U);
  q.clear();
  q.consume(0);
  EXPECT_TRUE(q.empty());
}

TEST(OutboundQueueTest, IovecPointsAtSliceBytes) {
  OutboundQueue q;
  BlockRef block = make_block(64, 0);
  q.push(block, 10, 20);
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.slice_count(), 1U);
  EXPECT_EQ(q.queued_bytes(), 20U);
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);
  EXPECT_EQ(iov[0].iov_base, block.data() + 10);
  EXPECT_EQ(iov[0].iov_len, 20U);
  // fill_iovecs is const: asking again gives the same answer.
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);
  EXPECT_EQ(iov[0].iov_base, block.data() + 10);
}

TEST(OutboundQueueTest, PartialConsumeMovesIntoTheHeadSlice) {
  OutboundQueue q;
  BlockRef a = make_block(32, 0);
  BlockRef b = make_block(32, 100);
  q.push(a, 5, 10);
  q.push(b, 0, 8);
  q.consume(3);
  EXPECT_EQ(q.queued_bytes(), 15U);
  EXPECT_EQ(q.slice_count(), 2U);
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(iov[0].iov_base, a.data() + 8);
  EXPECT_EQ(iov[0].iov_len, 7U);
  EXPECT_EQ(iov[1].iov_base, b.data());
  EXPECT_EQ(iov[1].iov_len, 8U);

  q.consume(6);  // one byte of the head left
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(iov[0].iov_base, a.data() + 14);
  EXPECT_EQ(iov[0].iov_len, 1U);

  q.consume(3);  // finishes the head and takes two bytes of the next slice
  EXPECT_EQ(q.slice_count(), 1U);
  EXPECT_EQ(q.queued_bytes(), 6U);
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);
  EXPECT_EQ(iov[0].iov_base, b.data() + 2);
  EXPECT_EQ(iov[0].iov_len, 6U);

  q.consume(6);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.queued_bytes(), 0U);
}

TEST(OutboundQueueTest, ConsumeAcrossManySlicesInOneCall) {
  OutboundQueue q;
  BlockRef block = make_block(100, 0);
  for (std::uint32_t i = 0; i < 5; ++i) {
    q.push(block, i * 10, 10);
  }
  q.consume(34);  // three whole slices and four bytes of the fourth
  EXPECT_EQ(q.slice_count(), 2U);
  EXPECT_EQ(q.queued_bytes(), 16U);
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(iov[0].iov_base, block.data() + 34);
  EXPECT_EQ(iov[0].iov_len, 6U);
  EXPECT_EQ(iov[1].iov_base, block.data() + 40);
}

// Streams many slices through the queue with small send limits and uneven consumes, checking that the
// bytes the iovecs name are always exactly the next unsent bytes of the stream.
TEST(OutboundQueueTest, StreamThroughManySlicesKeepsByteOrder) {
  MemoryAccount in_use;
  OutboundQueue q;
  std::vector<std::uint8_t> expected;
  std::uint32_t rng = 12345;
  auto next = [&rng](std::uint32_t bound) {
    rng = rng * 1103515245U + 12345U;
    return (rng >> 16) % bound;
  };
  for (int b = 0; b < 12; ++b) {
    BlockRef block = make_block(200, static_cast<std::uint8_t>(b * 37), &in_use);
    std::uint32_t offset = 0;
    while (offset < 200) {  // several slices per block, some of one byte
      const std::uint32_t length = std::min<std::uint32_t>(1 + next(40), 200 - offset);
      q.push(block, offset, length);
      expected.insert(expected.end(), block.data() + offset, block.data() + offset + length);
      offset += length;
    }
  }
  EXPECT_EQ(q.queued_bytes(), expected.size());
  EXPECT_GT(q.slice_count(), 8U);

  std::size_t sent = 0;
  iovec iov[5];
  while (!q.empty()) {
    const std::size_t max_bytes = 1 + next(90);
    const std::size_t count = q.fill_iovecs(iov, 5, max_bytes);
    ASSERT_GE(count, 1U);
    ASSERT_LE(count, 5U);
    const std::vector<std::uint8_t> got = gather(iov, count);
    ASSERT_LE(got.size(), max_bytes);
    ASSERT_LE(sent + got.size(), expected.size());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), expected.begin() + static_cast<std::ptrdiff_t>(sent)))
        << "at stream byte " << sent;
    // The kernel may take less than offered.
    const std::size_t taken = next(4) == 0 ? got.size() : 1 + next(static_cast<std::uint32_t>(got.size()));
    q.consume(taken);
    sent += taken;
    ASSERT_EQ(q.queued_bytes(), expected.size() - sent);
  }
  EXPECT_EQ(sent, expected.size());
  EXPECT_EQ(in_use.bytes(), 0);  // every block released once its last slice left
}

TEST(OutboundQueueTest, MaxIovLimitsSliceCount) {
  OutboundQueue q;
  BlockRef block = make_block(100, 0);
  for (std::uint32_t i = 0; i < 10; ++i) {
    q.push(block, i * 10, 10);
  }
  iovec iov[10];
  EXPECT_EQ(q.fill_iovecs(iov, 3, kNoByteLimit), 3U);
  EXPECT_EQ(iov[2].iov_base, block.data() + 20);
  EXPECT_EQ(q.fill_iovecs(iov, 10, kNoByteLimit), 10U);
  EXPECT_EQ(q.fill_iovecs(iov, 0, kNoByteLimit), 0U);
}

TEST(OutboundQueueTest, MaxBytesLimitsTotalAndCutsALongerHeadSlice) {
  OutboundQueue q;
  BlockRef block = make_block(100, 0);
  q.push(block, 0, 10);
  q.push(block, 10, 10);
  q.push(block, 20, 10);
  iovec iov[4];
  EXPECT_EQ(q.fill_iovecs(iov, 4, 30), 3U);
  EXPECT_EQ(q.fill_iovecs(iov, 4, 29), 2U);
  EXPECT_EQ(q.fill_iovecs(iov, 4, 20), 2U);
  EXPECT_EQ(q.fill_iovecs(iov, 4, 19), 1U);
  // A head slice bigger than the limit goes out in part: the limit's worth, at least a byte.
  ASSERT_EQ(q.fill_iovecs(iov, 4, 4), 1U);
  EXPECT_EQ(iov[0].iov_len, 4U);
  EXPECT_EQ(iov[0].iov_base, block.data());
  ASSERT_EQ(q.fill_iovecs(iov, 4, 0), 1U);
  EXPECT_EQ(iov[0].iov_len, 1U);
  // The limit counts only the unsent part of the head.
  q.consume(6);
  ASSERT_EQ(q.fill_iovecs(iov, 4, 14), 2U);
  EXPECT_EQ(total_len(iov, 2), 14U);
  EXPECT_EQ(q.fill_iovecs(iov, 4, 13), 1U);
}

TEST(OutboundQueueTest, PlaceholderHoldsLaterSlicesUntilFilled) {
  OutboundQueue q;
  BlockRef a = make_block(16, 0);
  BlockRef reply = make_block(16, 50);
  BlockRef c = make_block(16, 100);
  q.push(a, 0, 4);
  const std::uint64_t at = q.push_placeholder(7);
  q.push(c, 0, 6);
  EXPECT_EQ(q.slice_count(), 3U);
  EXPECT_EQ(q.queued_bytes(), 10U);  // a placeholder has no bytes yet

  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);  // stops at the placeholder
  EXPECT_EQ(iov[0].iov_base, a.data());
  q.consume(4);
  EXPECT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 0U);  // the head is the placeholder
  EXPECT_FALSE(q.empty());

  EXPECT_FALSE(q.fill_placeholder(at, 8, reply, 0, 5));      // wrong token
  EXPECT_FALSE(q.fill_placeholder(at + 1, 7, reply, 0, 5));  // wrong position
  EXPECT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 0U);
  ASSERT_TRUE(q.fill_placeholder(at, 7, reply, 3, 5));
  EXPECT_EQ(q.queued_bytes(), 11U);
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(iov[0].iov_base, reply.data() + 3);
  EXPECT_EQ(iov[0].iov_len, 5U);
  EXPECT_EQ(iov[1].iov_base, c.data());
  EXPECT_EQ(iov[1].iov_len, 6U);
  EXPECT_FALSE(q.fill_placeholder(at, 7, reply, 0, 5));  // already filled
}

TEST(OutboundQueueTest, PlaceholdersFilledOutOfOrderStillSendInRequestOrder) {
  OutboundQueue q;
  BlockRef first = make_block(8, 0);
  BlockRef second = make_block(8, 0);
  const std::uint64_t one = q.push_placeholder(1);
  const std::uint64_t two = q.push_placeholder(2);
  ASSERT_TRUE(q.fill_placeholder(two, 2, second, 0, 8));
  iovec iov[4];
  EXPECT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 0U);  // reply 1 is not ready: reply 2 waits
  ASSERT_TRUE(q.fill_placeholder(one, 1, first, 0, 8));
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(iov[0].iov_base, first.data());
  EXPECT_EQ(iov[1].iov_base, second.data());
}

TEST(OutboundQueueTest, FillPlaceholderAfterClearReturnsFalse) {
  OutboundQueue q;
  const std::uint64_t at = q.push_placeholder(3);
  q.clear();
  CountingBlock cb(8);
  EXPECT_FALSE(q.fill_placeholder(at, 3, BlockRef(&cb.block), 0, 8));
  EXPECT_EQ(cb.releases, 1);  // the refused block is not leaked
  EXPECT_TRUE(q.empty());
}

TEST(OutboundQueueTest, ConsumeReleasesABlockExactlyWhenItsLastSliceIsSent) {
  CountingBlock a(30);
  CountingBlock b(30);
  OutboundQueue q;
  q.push(BlockRef(&a.block), 0, 10);
  q.push(BlockRef(&a.block), 10, 10);
  q.push(BlockRef(&b.block), 0, 10);
  EXPECT_EQ(a.block.refs(), 2U);
  EXPECT_EQ(b.block.refs(), 1U);

  q.consume(9);
  EXPECT_EQ(a.block.refs(), 2U);  // first slice not fully sent
  q.consume(1);
  EXPECT_EQ(a.block.refs(), 1U);  // first slice done
  EXPECT_EQ(a.releases, 0);
  q.consume(9);
  EXPECT_EQ(a.releases, 0);
  q.consume(1);
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 0);
  q.consume(10);
  EXPECT_EQ(b.releases, 1);
  EXPECT_TRUE(q.empty());
}

TEST(OutboundQueueTest, ConsumeHandsReferencesToKeep) {
  CountingBlock a(30);
  CountingBlock b(30);
  OutboundQueue q;
  q.push(BlockRef(&a.block), 0, 10);
  q.push(BlockRef(&b.block), 0, 10);

  std::vector<BlockRef> keep;
  q.consume(10, &keep);  // slice a fully sent: its reference moves into keep
  ASSERT_EQ(keep.size(), 1U);
  EXPECT_EQ(keep[0].get(), &a.block);
  EXPECT_EQ(a.block.refs(), 1U);
  EXPECT_EQ(a.releases, 0);

  q.consume(4, &keep);  // slice b partly sent: keep gets its own reference, the queue keeps one
  ASSERT_EQ(keep.size(), 2U);
  EXPECT_EQ(keep[1].get(), &b.block);
  EXPECT_EQ(b.block.refs(), 2U);

  keep.clear();
  EXPECT_EQ(a.releases, 1);
  EXPECT_EQ(b.releases, 0);
  EXPECT_EQ(b.block.refs(), 1U);

  q.consume(6, &keep);
  ASSERT_EQ(keep.size(), 1U);
  EXPECT_EQ(b.releases, 0);  // held by keep until the notification
  keep.clear();
  EXPECT_EQ(b.releases, 1);
}

TEST(OutboundQueueTest, TruncateAfterKeepsWholeSlicesCoveringInFlightBytes) {
  std::deque<CountingBlock> blocks;  // a deque never moves its elements
  OutboundQueue q;
  for (int i = 0; i < 4; ++i) {
    blocks.emplace_back(10);
    q.push(BlockRef(&blocks.back().block), 0, 10);
  }
  q.consume(5);  // head: 5 unsent bytes
  ASSERT_EQ(q.queued_bytes(), 35U);

  // 12 bytes in flight: the rest of slice 0 (5) and 7 of slice 1. Both stay whole; 2 and 3 go.
  q.truncate_after(12);
  EXPECT_EQ(q.slice_count(), 2U);
  EXPECT_EQ(q.queued_bytes(), 15U);
  EXPECT_EQ(blocks[0].releases, 0);
  EXPECT_EQ(blocks[1].releases, 0);
  EXPECT_EQ(blocks[2].releases, 1);
  EXPECT_EQ(blocks[3].releases, 1);

  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(iov[0].iov_base, blocks[0].bytes.data() + 5);
  EXPECT_EQ(iov[0].iov_len, 5U);
  EXPECT_EQ(iov[1].iov_len, 10U);

  // Exactly the head's remainder in flight: only the head stays.
  q.truncate_after(5);
  EXPECT_EQ(q.slice_count(), 1U);
  EXPECT_EQ(q.queued_bytes(), 5U);
  EXPECT_EQ(blocks[1].releases, 1);

  // Nothing in flight: everything goes, including the partly sent head.
  q.truncate_after(0);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.queued_bytes(), 0U);
  EXPECT_EQ(blocks[0].releases, 1);
}

TEST(OutboundQueueTest, TruncateAfterMoreThanQueuedKeepsEverything) {
  OutboundQueue q;
  BlockRef block = make_block(30, 0);
  q.push(block, 0, 10);
  q.push(block, 10, 10);
  q.truncate_after(1000);
  EXPECT_EQ(q.slice_count(), 2U);
  EXPECT_EQ(q.queued_bytes(), 20U);
}

TEST(OutboundQueueTest, TruncateAfterDropsPendingPlaceholders) {
  OutboundQueue q;
  BlockRef block = make_block(30, 0);
  q.push(block, 0, 10);
  const std::uint64_t at = q.push_placeholder(9);
  q.push(block, 10, 10);
  q.truncate_after(10);
  EXPECT_EQ(q.slice_count(), 1U);
  EXPECT_EQ(q.queued_bytes(), 10U);
  EXPECT_FALSE(q.fill_placeholder(at, 9, block, 0, 4));
  // The position is reused by a later placeholder; the old token does not fill it.
  EXPECT_EQ(q.push_placeholder(10), at);
  EXPECT_FALSE(q.fill_placeholder(at, 9, block, 0, 4));
  EXPECT_TRUE(q.fill_placeholder(at, 10, block, 0, 4));
}

// A reply gathered late finds its place in O(1) however long the queue has been streaming: the
// position survives the head moving on and the ring growing and wrapping.
TEST(OutboundQueueTest, PlaceholderPositionsSurviveConsumeAndGrowth) {
  OutboundQueue q;
  BlockRef block = make_block(64, 0);
  std::vector<std::pair<std::uint64_t, std::uint32_t>> placeholders;
  for (std::uint32_t i = 0; i < 1000; ++i) {
    q.push(block, 0, 1);
    if (i % 100 == 99) {
      placeholders.emplace_back(q.push_placeholder(i), i);
    }
  }
  q.consume(100);                                                           // up to the first placeholder
  for (auto it = placeholders.rbegin(); it != placeholders.rend(); ++it) {  // filled last to first
    ASSERT_TRUE(q.fill_placeholder(it->first, it->second, block, 1, 2)) << it->second;
  }
  EXPECT_EQ(q.queued_bytes(), 900U + 10 * 2);
}

TEST(OutboundQueueTest, ClearReleasesEverything) {
  MemoryAccount in_use;
  {
    OutboundQueue q;
    for (int i = 0; i < 20; ++i) {
      q.push(make_block(100, 0, &in_use), 0, 100);
    }
    q.push_placeholder(1);
    q.consume(150);
    EXPECT_EQ(in_use.bytes(), static_cast<std::int64_t>(19 * HeapBlock::footprint(100)));
    q.clear();
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.slice_count(), 0U);
    EXPECT_EQ(q.queued_bytes(), 0U);
    EXPECT_EQ(in_use.bytes(), 0);

    q.push(make_block(50, 0, &in_use), 0, 50);  // usable after clear
    EXPECT_EQ(q.queued_bytes(), 50U);
  }
  EXPECT_EQ(in_use.bytes(), 0);  // the destructor clears too
}

// The slow-consumer limit counts what the queue costs, not just its payload: many tiny replies
// must not hide several times their size.
TEST(OutboundQueueTest, MemoryCountsSliceOverheadAndTheRing) {
  MemoryAccount account;
  OutboundQueue q(&account);
  BlockRef block = make_block(64, 0);
  for (int i = 0; i < 100; ++i) {
    q.push(block, 0, 24);
  }
  EXPECT_EQ(q.queued_bytes(), 2400U);
  EXPECT_GE(q.memory_bytes(), 2400U + 100 * (OutboundQueue::kSliceOverheadBytes + sizeof(Slice)));
  EXPECT_EQ(account.bytes(), static_cast<std::int64_t>(malloc_footprint(128 * sizeof(Slice))));  // the ring
  q.consume(2400);
  // Sent empty, it keeps its ring for the next burst, still measured and charged, until released.
  EXPECT_EQ(q.memory_bytes(), 128 * sizeof(Slice));
  EXPECT_EQ(account.bytes(), static_cast<std::int64_t>(malloc_footprint(128 * sizeof(Slice))));
  q.release_spare_ring();
  EXPECT_EQ(q.memory_bytes(), 0U);
  EXPECT_EQ(account.bytes(), 0);
}

TEST(OutboundQueueTest, GrowsPastEightSlicesAcrossTheRingWrapInOrder) {
  OutboundQueue q;
  BlockRef block = make_block(256, 0);
  // Move the head off zero so that growth has to unwrap the ring.
  for (std::uint32_t i = 0; i < 6; ++i) {
    q.push(block, i, 1);
  }
  q.consume(5);
  for (std::uint32_t i = 6; i < 100; ++i) {
    q.push(block, i, 1);
  }
  EXPECT_EQ(q.slice_count(), 95U);
  EXPECT_EQ(q.queued_bytes(), 95U);
  std::vector<iovec> iov(128);
  ASSERT_EQ(q.fill_iovecs(iov.data(), iov.size(), kNoByteLimit), 95U);
  for (std::uint32_t i = 0; i < 95; ++i) {
    ASSERT_EQ(iov[i].iov_base, block.data() + 5 + i) << "slice " << i;
    ASSERT_EQ(iov[i].iov_len, 1U);
  }
}

TEST(OutboundQueueTest, KeepsItsRingWhenSentEmptyUntilReleasedAndFreesItWhenCut) {
  const std::size_t before = g_live_array_allocations;
  OutboundQueue q;
  BlockRef block = make_block(64, 0);
  q.push(block, 0, 10);
  EXPECT_EQ(g_live_array_allocations, before + 1);
  for (std::uint32_t i = 1; i < 20; ++i) {
    q.push(block, 0, 1);
  }
  EXPECT_EQ(g_live_array_allocations, before + 1);  // growth replaced the ring, no leak
  q.consume(q.queued_bytes());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(g_live_array_allocations, before + 1);  // sent empty: the ring stays for the next burst
  q.push(block, 0, 10);
  EXPECT_EQ(g_live_array_allocations, before + 1);  // ... which reuses it
  q.release_spare_ring();
  EXPECT_EQ(g_live_array_allocations, before + 1);  // not spare while it holds a slice
  q.consume(10);
  q.release_spare_ring();
  EXPECT_EQ(g_live_array_allocations, before);  // released once empty

  q.push(block, 0, 10);
  EXPECT_EQ(g_live_array_allocations, before + 1);
  q.truncate_after(0);
  EXPECT_EQ(g_live_array_allocations, before);  // truncation to nothing frees it at once

  q.push(block, 0, 10);
  q.consume(10);
  q.release_spare_ring();
  EXPECT_EQ(g_live_array_allocations, before);
  EXPECT_EQ(block->refs(), 1U);
}

// ---- fill_batched: small slices copied into one run, large ones zero-copy, byte order kept.

// Hands out fresh blocks of `size` bytes, at most `limit` of them (charged to `account`, if any).
struct TestBatches final : BatchBlocks {
  explicit TestBatches(std::uint32_t size, std::size_t limit = 1, MemoryAccount* account = nullptr)
      : size(size), limit(limit), account(account) {}
  BlockRef next(std::uint64_t /*position*/) override {
    if (handed.size() == limit) {
      return {};
    }
    handed.push_back(HeapBlock::create(size, account, UINT32_MAX, owner_tag()));
    return handed.back();
  }
  std::uint32_t size;
  std::size_t limit;
  MemoryAccount* account;
  std::vector<BlockRef> handed;
};

TEST(OutboundQueueBatchTest, SmallSlicesBecomeOneRunInTheBatch) {
  OutboundQueue q;
  BlockRef block = make_block(300, 0);
  q.push(block, 0, 10);
  q.push(block, 100, 20);
  q.push(block, 200, 30);
  TestBatches batches(1024);
  iovec iov[4];
  const SendPlan plan = q.fill_batched(iov, 4, kNoByteLimit, batches, 64);
  ASSERT_EQ(plan.iov_count, 1U);
  EXPECT_EQ(plan.bytes, 60U);
  EXPECT_EQ(plan.batched_bytes, 60U);
  EXPECT_EQ(plan.end_position, 3U);
  EXPECT_EQ(iov[0].iov_base, batches.handed.at(0).data());
  std::vector<std::uint8_t> expected(block.data(), block.data() + 10);
  expected.insert(expected.end(), block.data() + 100, block.data() + 120);
  expected.insert(expected.end(), block.data() + 200, block.data() + 230);
  EXPECT_EQ(gather(iov, plan.iov_count), expected);
}

TEST(OutboundQueueBatchTest, LargeSlicesStayZeroCopyBetweenRuns) {
  OutboundQueue q;
  BlockRef block = make_block(1000, 7);
  q.push(block, 0, 8);    // small
  q.push(block, 8, 500);  // large: its own iovec, pointing at the block
  q.push(block, 508, 8);  // small: a new run after the large slice
  q.push(block, 516, 8);  // extends that run
  TestBatches batches(256);
  iovec iov[8];
  const SendPlan plan = q.fill_batched(iov, 8, kNoByteLimit, batches, 64);
  ASSERT_EQ(plan.iov_count, 3U);
  EXPECT_EQ(iov[1].iov_base, block.data() + 8);
  EXPECT_EQ(iov[1].iov_len, 500U);
  EXPECT_EQ(iov[2].iov_len, 16U);
  EXPECT_EQ(plan.batched_bytes, 24U);
  EXPECT_EQ(gather(iov, plan.iov_count), std::vector<std::uint8_t>(block.data(), block.data() + 524));
}

TEST(OutboundQueueBatchTest, StopsWhenTheBatchOrIovecsRunOut) {
  OutboundQueue q;
  BlockRef block = make_block(1000, 3);
  for (std::uint32_t i = 0; i < 10; ++i) {
    q.push(block, i * 40, 40);
  }
  iovec iov_of_four[4];
  TestBatches room_for_two(100);
  SendPlan plan = q.fill_batched(iov_of_four, 4, kNoByteLimit, room_for_two, 64);
  EXPECT_EQ(plan.iov_count, 1U);
  EXPECT_EQ(plan.bytes, 80U);
  EXPECT_EQ(plan.end_position, 2U);
  q.consume(80);
  // Batching off: one iovec per slice, up to max_iov.
  TestBatches unused(100);
  plan = q.fill_batched(iov_of_four, 4, kNoByteLimit, unused, 0);
  EXPECT_EQ(plan.iov_count, 4U);
  EXPECT_EQ(plan.batched_bytes, 0U);
  EXPECT_EQ(plan.end_position, 6U);
  EXPECT_EQ(iov_of_four[0].iov_base, block.data() + 80);
}

TEST(OutboundQueueBatchTest, StreamWithPartialConsumesKeepsByteOrder) {
  MemoryAccount in_use;
  OutboundQueue q;
  std::vector<std::uint8_t> expected;
  std::uint32_t rng = 777;
  auto next = [&rng](std::uint32_t bound) {
    rng = rng * 1103515245U + 12345U;
    return (rng >> 16) % bound;
  };
  for (int b = 0; b < 20; ++b) {
    BlockRef block = make_block(600, static_cast<std::uint8_t>(b * 11), &in_use);
    std::uint32_t offset = 0;
    while (offset < 600) {  // a mix of slices below and above the 48-byte threshold
      const std::uint32_t length = std::min<std::uint32_t>(1 + next(120), 600 - offset);
      q.push(block, offset, length);
      expected.insert(expected.end(), block.data() + offset, block.data() + offset + length);
      offset += length;
    }
  }
  std::size_t sent = 0;
  iovec iov[6];
  while (!q.empty()) {
    // A new batch each time, as the shard takes one when slices still refer to the last.
    TestBatches batches(200, 1 + next(3), &in_use);
    const SendPlan plan = q.fill_batched(iov, 6, 1 + next(400), batches, 48);
    ASSERT_GE(plan.iov_count, 1U);
    const std::vector<std::uint8_t> got = gather(iov, plan.iov_count);
    ASSERT_EQ(got.size(), plan.bytes);
    ASSERT_TRUE(std::equal(got.begin(), got.end(), expected.begin() + static_cast<std::ptrdiff_t>(sent)))
        << "at stream byte " << sent;
    const std::size_t taken = next(3) == 0 ? got.size() : 1 + next(static_cast<std::uint32_t>(got.size()));
    q.consume(taken);
    sent += taken;
  }
  EXPECT_EQ(sent, expected.size());
  EXPECT_EQ(in_use.bytes(), 0);
}

TEST(OutboundQueueBatchTest, ABatchedSliceLetsGoOfItsBlockAtOnceAndAShortSendResumesFromTheBatch) {
  CountingBlock lent(64);
  CountingBlock large(200);
  OutboundQueue q;
  q.push(BlockRef(&lent.block), 0, 32);
  q.push(BlockRef(&large.block), 0, 200);
  q.push(BlockRef(&lent.block), 32, 32);
  iovec iov[4];
  TestBatches first(128);
  SendPlan plan = q.fill_batched(iov, 4, kNoByteLimit, first, 48);
  ASSERT_EQ(plan.iov_count, 3U);
  EXPECT_EQ(lent.releases, 1) << "both small slices now refer to the batch";
  EXPECT_EQ(large.releases, 0) << "a large slice is sent from its own block";
  std::vector<std::uint8_t> expected = gather(iov, plan.iov_count);
  q.consume(20);  // a short send: 12 bytes of the first slice, the large one and the last are left
  expected.erase(expected.begin(), expected.begin() + 20);
  TestBatches second(128);
  plan = q.fill_batched(iov, 4, kNoByteLimit, second, 48);
  EXPECT_EQ(gather(iov, plan.iov_count), expected);
  EXPECT_TRUE(second.handed.empty()) << "what the first batch holds is sent from there, not copied again";
  ASSERT_EQ(plan.iov_count, 3U);
  EXPECT_EQ(iov[0].iov_base, first.handed.at(0).data() + 20);
  EXPECT_EQ(plan.batched_bytes, 0U);
  q.consume(plan.bytes);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(large.releases, 1);
}

TEST(OutboundQueueBatchTest, TheRestOfAShortSendGoesOutOfItsBatchAsOneIovec) {
  OutboundQueue q;
  BlockRef block = make_block(400, 1);
  for (std::uint32_t i = 0; i < 4; ++i) {
    q.push(block, i * 100, 100);
  }
  TestBatches first(512);
  iovec iov[4];
  ASSERT_EQ(q.fill_batched(iov, 4, kNoByteLimit, first, 128).iov_count, 1U);
  q.consume(150);  // half of the second slice and the two after it are left, back to back in the batch
  TestBatches second(512);
  const SendPlan rest = q.fill_batched(iov, 4, kNoByteLimit, second, 128);
  ASSERT_EQ(rest.iov_count, 1U);
  EXPECT_EQ(iov[0].iov_base, first.handed.at(0).data() + 150);
  EXPECT_EQ(iov[0].iov_len, 250U);
  EXPECT_EQ(rest.batched_bytes, 0U);
  EXPECT_EQ(gather(iov, 1), std::vector<std::uint8_t>(block.data() + 150, block.data() + 400));
}

TEST(OutboundQueueBatchTest, AFullBatchBlockIsFollowedByTheNextOne) {
  OutboundQueue q;
  BlockRef block = make_block(600, 5);
  for (std::uint32_t i = 0; i < 6; ++i) {
    q.push(block, i * 100, 100);
  }
  TestBatches batches(250, 2);  // two slices a block, two blocks: four slices this send
  iovec iov[8];
  const SendPlan plan = q.fill_batched(iov, 8, kNoByteLimit, batches, 128);
  ASSERT_EQ(plan.iov_count, 2U);
  EXPECT_EQ(iov[0].iov_base, batches.handed.at(0).data());
  EXPECT_EQ(iov[1].iov_base, batches.handed.at(1).data());
  EXPECT_EQ(plan.batched_bytes, 400U);
  EXPECT_EQ(plan.end_position, 4U);
  EXPECT_EQ(gather(iov, plan.iov_count), std::vector<std::uint8_t>(block.data(), block.data() + 400));
  batches.handed.clear();  // the slices keep the blocks until they are written
  q.consume(400);
  TestBatches again(250, 2);
  const SendPlan rest = q.fill_batched(iov, 8, kNoByteLimit, again, 128);
  EXPECT_EQ(gather(iov, rest.iov_count), std::vector<std::uint8_t>(block.data() + 400, block.data() + 600));
}

TEST(OutboundQueueTest, CopyOutGivesABorrowedSliceItsOwnBlockAndLeavesTheRest) {
  CountingBlock borrowed(64);
  MemoryAccount in_use;
  OutboundQueue q;
  const BlockRef other = make_block(16, 9);
  q.push(other, 0, 16);
  q.push(BlockRef(&borrowed.block), 8, 24);
  const std::uint64_t placeholder = q.push_placeholder(5);
  EXPECT_EQ(q.end_position(), 3U);
  EXPECT_EQ(q.copy_out_blocks_of(&borrowed.releases, &in_use), 24);
  EXPECT_EQ(borrowed.releases, 1);
  EXPECT_GT(in_use.bytes(), 24);
  EXPECT_TRUE(q.fill_placeholder(placeholder, 5, other, 0, 4));
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 3U);
  EXPECT_EQ(iov[0].iov_base, other.data());
  EXPECT_EQ(gather(iov + 1, 1),
            std::vector<std::uint8_t>(borrowed.bytes.begin() + 8, borrowed.bytes.begin() + 32));
  q.clear();
  EXPECT_EQ(in_use.bytes(), 0);
}

// ---- push_copy: small copies appended into one block, sent from there as they are.

std::span<const std::uint8_t> bytes_of(const std::vector<std::uint8_t>& v) {
  return {v.data(), v.size()};
}

std::vector<std::uint8_t> pattern(std::size_t size, std::uint8_t seed) {
  std::vector<std::uint8_t> v(size);
  for (std::size_t i = 0; i < size; ++i) {
    v[i] = static_cast<std::uint8_t>(seed + i);
  }
  return v;
}

TEST(OutboundQueueCopyTest, SmallCopiesShareAFewBlocksOneSliceEach) {
  MemoryAccount account;
  OutboundQueue q(&account);
  std::vector<std::uint8_t> expected;
  for (std::uint8_t i = 0; i < 40; ++i) {
    const std::vector<std::uint8_t> copy = pattern(30, i);
    ASSERT_TRUE(q.push_copy(bytes_of(copy)));
    expected.insert(expected.end(), copy.begin(), copy.end());
  }
  // The smallest block (1 KiB, header included) takes the first 32 copies, a larger one the rest.
  EXPECT_EQ(q.slice_count(), 2U);
  EXPECT_EQ(q.queued_bytes(), 1200U);
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 2U);
  EXPECT_EQ(gather(iov, 2), expected);
  // The blocks are charged whole, and what is queued is measured with their unused room.
  EXPECT_GE(account.bytes(), static_cast<std::int64_t>(OutboundQueue::kMinAppendAllocation + 1200 -
                                                       2 * OutboundQueue::kSliceOverheadBytes));
  constexpr std::size_t kRingRounding = 32;  // malloc's rounding of the slice ring, charged, not measured
  EXPECT_GE(q.memory_bytes() + kRingRounding, static_cast<std::size_t>(account.bytes()));
  q.consume(1200);
  q.release_spare_ring();
  EXPECT_EQ(q.memory_bytes(), 0U);
  EXPECT_EQ(account.bytes(), 0);
}

TEST(OutboundQueueCopyTest, ACopyAfterASharedSliceOrAPlaceholderStartsANewBlock) {
  OutboundQueue q;
  const std::vector<std::uint8_t> a = pattern(10, 1);
  const std::vector<std::uint8_t> b = pattern(10, 50);
  ASSERT_TRUE(q.push_copy(bytes_of(a)));
  const BlockRef shared = make_block(64, 100);  // room after its slice that a copy must not use
  q.push(shared, 0, 8);
  ASSERT_TRUE(q.push_copy(bytes_of(b)));
  const std::uint64_t place = q.push_placeholder(3);
  ASSERT_TRUE(q.push_copy(bytes_of(a)));
  EXPECT_EQ(q.slice_count(), 5U);
  for (std::uint32_t i = 8; i < 64; ++i) {
    ASSERT_EQ(shared.data()[i], static_cast<std::uint8_t>(100 + i)) << "a shared block is never written";
  }
  ASSERT_TRUE(q.fill_placeholder(place, 3, shared, 0, 8));
  std::vector<std::uint8_t> expected = a;
  expected.insert(expected.end(), shared.data(), shared.data() + 8);
  expected.insert(expected.end(), b.begin(), b.end());
  expected.insert(expected.end(), shared.data(), shared.data() + 8);
  expected.insert(expected.end(), a.begin(), a.end());
  iovec iov[8];
  EXPECT_EQ(gather(iov, q.fill_iovecs(iov, 8, kNoByteLimit)), expected);
}

TEST(OutboundQueueCopyTest, EveryCopyBlocksUnusedRoomIsMeasuredNotOnlyTheTails) {
  MemoryAccount account;  // charged for the copies' blocks and the ring, not the shared block
  OutboundQueue q(&account);
  const BlockRef shared = make_block(4096, 0);
  const std::vector<std::uint8_t> reply = pattern(20, 5);
  for (int i = 0; i < 100; ++i) {
    q.push(shared, 0, 4096);
    ASSERT_TRUE(q.push_copy(bytes_of(reply)));
  }
  // Each copy starts a block of its own (a shared slice came between), sized to the queue: most of
  // each block is room nothing will use, and the per-connection cap must see all of it.
  EXPECT_EQ(q.slice_count(), 200U);
  const std::size_t shared_measured = 100 * (4096 + OutboundQueue::kSliceOverheadBytes);
  constexpr std::size_t kRingRounding = 32;  // malloc's rounding of the slice ring, charged, not measured
  EXPECT_GE(q.memory_bytes() + kRingRounding, shared_measured + static_cast<std::size_t>(account.bytes()));
  EXPECT_GT(account.bytes(), 100 * 4096) << "the copies' blocks are queue-sized";

  q.truncate_after(4096 + 20);  // one shared slice and its copy are in flight
  EXPECT_EQ(q.slice_count(), 2U);
  EXPECT_GE(q.memory_bytes() + kRingRounding,
            4096 + OutboundQueue::kSliceOverheadBytes + static_cast<std::size_t>(account.bytes()));
  q.consume(4096 + 20);
  q.release_spare_ring();
  EXPECT_EQ(q.memory_bytes(), 0U);
  EXPECT_EQ(account.bytes(), 0);
}

TEST(OutboundQueueCopyTest, BlocksLeftBehindAreMeasuredUntilTheyAreSent) {
  MemoryAccount account;
  OutboundQueue q(&account);
  const BlockRef shared = make_block(4096, 0);
  const std::vector<std::uint8_t> frame = pattern(100, 2);
  ASSERT_TRUE(q.push_copy(bytes_of(frame)));
  q.push(shared, 0, 4096);  // the copy's block is left behind with its room
  OutboundQueue only_shared;
  only_shared.push(shared, 0, 4096);
  EXPECT_GE(q.memory_bytes(), only_shared.memory_bytes() + 100 + OutboundQueue::kSliceOverheadBytes +
                                  OutboundQueue::kMinAppendAllocation / 2)
      << "the room behind the copy is measured while the block waits";
  q.consume(100);  // the copy is sent: its block and its room go
  EXPECT_EQ(q.memory_bytes(), only_shared.memory_bytes());
  q.consume(4096);
  q.release_spare_ring();
  EXPECT_EQ(q.memory_bytes(), 0U);
  EXPECT_EQ(account.bytes(), 0);
}

TEST(OutboundQueueCopyTest, PlaceholdersBetweenCopiesLeaveLittleRoomBehind) {
  // Pipelined IDENTITY and LIST on a hub of several shards: a small reply copied, then a LIST's
  // placeholder, thousands of times before the first gather comes back.
  MemoryAccount account;
  OutboundQueue q(&account);
  const std::vector<std::uint8_t> reply = pattern(24, 3);
  constexpr std::uint32_t kPairs = 10'000;
  for (std::uint32_t i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(q.push_copy(bytes_of(reply)));
    q.push_placeholder(i);
  }
  const std::size_t per_slice = OutboundQueue::kSliceOverheadBytes + 2 * sizeof(Slice);
  EXPECT_LE(q.memory_bytes(),
            2 * q.queued_bytes() + OutboundQueue::kMaxAppendAllocation + std::size_t{2} * kPairs * per_slice)
      << "room left behind stays below the queued bytes plus one block";
  EXPECT_LE(static_cast<std::size_t>(account.bytes()),
            q.memory_bytes() + std::size_t{2} * kPairs * kMallocGranule)
      << "the blocks behind the copies are no larger than measured (malloc rounding aside)";
  q.clear();
  q.release_spare_ring();
  EXPECT_EQ(account.bytes(), 0);
}

TEST(OutboundQueueCopyTest, ARunOfCopiesTakesFewBlocksAndLittleRoomBeyondTheTail) {
  OutboundQueue q;
  const std::vector<std::uint8_t> frame = pattern(1040, 1);
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(q.push_copy(bytes_of(frame)));
  }
  // 406 KiB: blocks of 2, 4, 8, 16, 32 KiB, then 64 KiB ones: far fewer slices than copies.
  EXPECT_LE(q.slice_count(), 12U);
  // Room: the tail's, up to a block, and less than one copy in each block left behind.
  EXPECT_LE(q.memory_bytes(), q.queued_bytes() + OutboundQueue::kMaxAppendAllocation +
                                  q.slice_count() * (1040 + OutboundQueue::kSliceOverheadBytes) +
                                  q.slice_count() * sizeof(Slice) * 2);
}

TEST(OutboundQueueCopyTest, CopiesAppendedDuringASendLeaveItsBytesAloneAndGoInTheNext) {
  OutboundQueue q;
  const std::vector<std::uint8_t> first = pattern(40, 0);
  const std::vector<std::uint8_t> second = pattern(40, 40);
  ASSERT_TRUE(q.push_copy(bytes_of(first)));
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);  // a send of `first` is in flight
  const iovec in_flight = iov[0];
  ASSERT_TRUE(q.push_copy(bytes_of(second)));
  EXPECT_EQ(gather(&in_flight, 1), first);
  q.consume(in_flight.iov_len);
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);
  EXPECT_EQ(gather(iov, 1), second);
}

TEST(OutboundQueueCopyTest, ABatchedSendTakesCopiedBytesWhereTheyAreNotIntoItsBatch) {
  OutboundQueue q;
  const std::vector<std::uint8_t> copy = pattern(20, 7);
  ASSERT_TRUE(q.push_copy(bytes_of(copy)));
  TestBatches batches(1024);
  iovec iov[4];
  const SendPlan plan = q.fill_batched(iov, 4, kNoByteLimit, batches, 64);
  ASSERT_EQ(plan.iov_count, 1U);
  EXPECT_EQ(plan.batched_bytes, 0U);
  EXPECT_TRUE(batches.handed.empty());
  EXPECT_EQ(gather(iov, 1), copy);
}

TEST(OutboundQueueCopyTest, TruncateCutsCopiesAppendedAfterTheSendInFlightAndLaterOnesFollowTheCut) {
  OutboundQueue q;
  const std::vector<std::uint8_t> sent = pattern(30, 0);
  const std::vector<std::uint8_t> late = pattern(30, 90);
  const std::vector<std::uint8_t> last_words = pattern(5, 200);
  ASSERT_TRUE(q.push_copy(bytes_of(sent)));
  iovec iov[4];
  ASSERT_EQ(q.fill_iovecs(iov, 4, kNoByteLimit), 1U);  // 30 bytes in flight
  ASSERT_TRUE(q.push_copy(bytes_of(late)));
  q.truncate_after(30);
  EXPECT_EQ(q.queued_bytes(), 30U);
  EXPECT_EQ(gather(iov, 1), sent) << "the bytes in flight are untouched";
  ASSERT_TRUE(q.push_copy(bytes_of(last_words)));
  std::vector<std::uint8_t> expected = sent;
  expected.insert(expected.end(), last_words.begin(), last_words.end());
  EXPECT_EQ(gather(iov, q.fill_iovecs(iov, 4, kNoByteLimit)), expected);
}

TEST(OutboundQueueCopyTest, ACopyBlockThatTheCutMakesTheTailAgainIsMeasuredOnce) {
  OutboundQueue q;
  const BlockRef shared = make_block(4096, 0);
  const std::vector<std::uint8_t> copy = pattern(30, 0);
  ASSERT_TRUE(q.push_copy(bytes_of(copy)));
  q.push(shared, 0, 4096);  // the copy's block is left behind
  q.truncate_after(30);     // and the tail again
  OutboundQueue alone;
  ASSERT_TRUE(alone.push_copy(bytes_of(copy)));
  EXPECT_EQ(q.memory_bytes(), alone.memory_bytes()) << "its room counts once, as the tail's";
  q.consume(30);
  q.release_spare_ring();
  EXPECT_EQ(q.memory_bytes(), 0U);
}

TEST(OutboundQueueCopyTest, BlocksGrowWithTheQueueAndACopyLargerThanTheirsGetsItsOwn) {
  MemoryAccount account;
  OutboundQueue q(&account);
  const std::vector<std::uint8_t> kib = pattern(1024, 3);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(q.push_copy(bytes_of(kib)));
  }
  // 200 KiB in blocks of at most kMaxAppendAllocation: a few slices, not 200.
  EXPECT_LE(q.slice_count(), std::size_t{2} * 200 * 1024 / OutboundQueue::kMaxAppendAllocation + 8);
  const std::vector<std::uint8_t> big = pattern(OutboundQueue::kMaxAppendAllocation * 2, 9);
  ASSERT_TRUE(q.push_copy(bytes_of(big)));
  std::vector<std::uint8_t> all;
  iovec iov[64];
  while (!q.empty()) {
    const std::size_t n = q.fill_iovecs(iov, 64, kNoByteLimit);
    const std::vector<std::uint8_t> part = gather(iov, n);
    all.insert(all.end(), part.begin(), part.end());
    q.consume(part.size());
  }
  ASSERT_EQ(all.size(), std::size_t{200} * 1024 + big.size());
  EXPECT_TRUE(std::equal(big.begin(), big.end(), all.end() - static_cast<std::ptrdiff_t>(big.size())));
  EXPECT_TRUE(std::equal(kib.begin(), kib.end(), all.begin()));
  q.release_spare_ring();
  EXPECT_EQ(account.bytes(), 0);
}

}  // namespace
}  // namespace ringhub
