// Tests for transport/send_contexts without a ring: a send's batch block is made only when the send
// first copies a small slice, sized for the queue and charged to the shard; a send of appended copies
// or shared blocks holds none; batching off makes none.
#include "transport/send_contexts.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/outbound_queue.hpp"
#include "core/shared_block.hpp"

namespace ringhub {
namespace {

constexpr std::size_t kSmallLimit = 4096;
constexpr std::uint64_t kAllLent = std::numeric_limits<std::uint64_t>::max();

class SendContextsTest : public ::testing::Test {
 protected:
  ~SendContextsTest() override {
    if (context_ != nullptr) {
      pool_.release(context_);
    }
  }

  // Plans one send of `queue` with a fresh context, as the Sender does: batching off is a batch
  // threshold of 0 and nothing batchable.
  SendPlan plan_send(OutboundQueue& queue, bool batching = true) {
    context_ = pool_.acquire();
    SendContextPool::Batches batches(pool_, *context_, batching ? queue.queued_bytes() : 0, kAllLent);
    return queue.fill_batched(context_->iov, kMaxIovPerSend, kMaxBytesPerSend, batches,
                              batching ? kSmallLimit : 0);
  }

  static BlockRef shared_block(std::uint32_t bytes) {
    BlockRef block = HeapBlock::create(bytes);
    std::fill_n(block.data(), bytes, std::uint8_t{7});
    return block;
  }

  MemoryAccount memory_;
  SendContextPool pool_{memory_};
  SendContext* context_ = nullptr;
};

TEST_F(SendContextsTest, ASendThatCopiesGetsABatchSizedForTheQueueAndCharged) {
  OutboundQueue queue(&memory_);
  const BlockRef block = shared_block(1000);
  queue.push(block, 0, 100);
  queue.push(block, 200, 100);
  const SendPlan plan = plan_send(queue);
  EXPECT_EQ(plan.batched_bytes, 200U);
  EXPECT_EQ(plan.iov_count, 1U) << "both small slices go out of one batch";
  ASSERT_TRUE(context_->batch);
  EXPECT_GE(context_->batch->capacity(), 200U);
  EXPECT_LE(context_->batch->capacity(), kMinSendBatchBytes) << "a 200-byte queue needs the smallest batch";
  EXPECT_GE(memory_.bytes(), static_cast<std::int64_t>(context_->batch->capacity()));
}

TEST_F(SendContextsTest, ASendOfAppendedCopiesHoldsNoBatch) {
  OutboundQueue queue(&memory_);
  const std::vector<std::uint8_t> frame(1024, 3);
  ASSERT_TRUE(queue.push_copy(frame));
  ASSERT_TRUE(queue.push_copy(frame));
  const SendPlan plan = plan_send(queue);
  EXPECT_EQ(plan.bytes, 2048U);
  EXPECT_EQ(plan.batched_bytes, 0U);
  EXPECT_FALSE(context_->batch) << "nothing was copied, so no batch block was made";
}

TEST_F(SendContextsTest, ASendOfLargeSharedSlicesHoldsNoBatch) {
  OutboundQueue queue(&memory_);
  const BlockRef block = shared_block(3 * kSmallLimit);
  queue.push(block, 0, 2 * kSmallLimit);
  const SendPlan plan = plan_send(queue);
  EXPECT_EQ(plan.bytes, 2 * kSmallLimit);
  EXPECT_FALSE(context_->batch);
}

TEST_F(SendContextsTest, BatchingOffCopiesNothing) {
  OutboundQueue queue(&memory_);
  const BlockRef block = shared_block(1000);
  queue.push(block, 0, 100);
  const SendPlan plan = plan_send(queue, false);
  EXPECT_EQ(plan.iov_count, 1U);
  EXPECT_EQ(plan.batched_bytes, 0U);
  EXPECT_FALSE(context_->batch);
}

}  // namespace
}  // namespace ringhub
