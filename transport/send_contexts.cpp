// SendContextPool: the per-shard pool of send contexts and the batch blocks sends copy small frames
// into. See transport/send_contexts.hpp.
#include "transport/send_contexts.hpp"

#include <algorithm>
#include <bit>
#include <utility>

namespace ringhub {

SendContext* SendContextPool::acquire() {
  ++acquired_;
  if (free_ == nullptr) {
    memory_.charge(malloc_footprint(sizeof(SendContext)));
    return new SendContext;
  }
  --free_count_;
  return std::exchange(free_, free_->next);
}

void SendContextPool::release(SendContext* context) {
  if (free_count_ >= kMaxFreeSendContexts) {
    destroy(context);  // after a burst of many concurrent sends, give the memory back
    return;
  }
  context->zc_hold.clear();
  if (free_count_ >= kMaxFreeBatchBuffers) {
    context->batch.reset();
  }
  context->next = free_;
  free_ = context;
  ++free_count_;
}

void SendContextPool::destroy(SendContext* context) {
  context->batch.reset();
  memory_.release(malloc_footprint(sizeof(SendContext)));
  delete context;
}

void SendContextPool::on_tick() {
  if (acquired_ == acquired_at_last_tick_) {
    free_pooled();
  }
  acquired_at_last_tick_ = acquired_;
}

void SendContextPool::free_pooled() {
  while (free_ != nullptr) {
    destroy(std::exchange(free_, free_->next));
  }
  free_count_ = 0;
}

void SendContextPool::prepare_batch(SendContext& context, std::size_t queued_bytes) {
  const std::size_t want =
      std::clamp(std::bit_ceil(queued_bytes + kBatchBlockOverhead), kMinSendBatchBytes, kSendBatchBytes) -
      kBatchBlockOverhead;
  // A batch that slices still refer to (the unsent rest of a short send) is theirs: take a new one.
  if (!context.batch || context.batch->capacity() < want || context.batch->refs() > 1) {
    context.batch =
        HeapBlock::create(static_cast<std::uint32_t>(want), &memory_, UINT32_MAX, BatchBlocks::owner_tag());
  }
}

BlockRef SendContextPool::Batches::next(std::uint64_t position) {
  if (queued_bytes_ == 0 || handed_ == kMaxBatchBlocksPerSend || (handed_ > 0 && position >= lent_end_)) {
    return {};  // batching is off, or this send has copied enough
  }
  if (handed_ == 0) {
    pool_.prepare_batch(context_, queued_bytes_);
    if (!context_.batch) {
      return {};  // memory ran out for it
    }
    ++handed_;
    return context_.batch;
  }
  ++handed_;
  return HeapBlock::create(static_cast<std::uint32_t>(kSendBatchBytes - kBatchBlockOverhead), &pool_.memory_,
                           UINT32_MAX, owner_tag());
}

}  // namespace ringhub
