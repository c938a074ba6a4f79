// Send contexts: what one sendmsg in flight needs to stay put (its msghdr, iovecs and batch blocks),
// pooled per shard so an idle connection holds none, and the batch blocks a send copies small frames
// into. The shard's Sender (transport/sender.cpp) takes a context per send and gives it back at the CQE.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/memory_account.hpp"
#include "core/outbound_queue.hpp"
#include "core/shared_block.hpp"
#include "transport/hub_config.hpp"

namespace ringhub {

// Iovecs per sendmsg: enough to batch a burst of small deliveries into one syscall, small enough
// that the context stays in cache. Bytes per sendmsg: a few loopback socket buffers' worth.
inline constexpr std::size_t kMaxIovPerSend = 64;
inline constexpr std::size_t kMaxBytesPerSend = 4U << 20;
// A draining connection's sends are this small, so each completes soon after the client reads it:
// the drain's deadline is extended while sends complete (ConnectionLifecycle), and one 4 MiB send to
// a slow reader would hide its progress.
inline constexpr std::size_t kMaxBytesPerDrainingSend = 64U << 10;
// Send contexts a shard keeps for reuse (about 1 KiB each); more are freed, so a burst of many
// concurrent sends does not stay in the hub's RSS.
inline constexpr std::size_t kMaxFreeSendContexts = 1024;
// The copy buffer of one send for small frames (HubConfig::batch_threshold): at most a loopback socket
// buffer's worth, and no larger than the power of two above what the connection has queued, so a send
// held by a reader that stopped reading pins about as much batch as it has queue (100k such readers
// with 64 KiB each would be 6.4 GB). Pooled contexts keep theirs only up to kMaxFreeBatchBuffers.
inline constexpr std::size_t kSendBatchBytes = 64U << 10;
inline constexpr std::size_t kMinSendBatchBytes = 512;
// A batch's allocation (HeapBlock header and malloc's rounding included) stays within the sizes above,
// so the largest one is still below LargeBlockMemory::kMinBytes: malloc reuses a freed batch at once,
// where a map of its own would cost page faults on every short send.
inline constexpr std::size_t kBatchBlockOverhead = 64;
static_assert(HeapBlock::kHeaderBytes + 16 <= kBatchBlockOverhead);
static_assert(kSendBatchBytes - kBatchBlockOverhead == kMaxBatchThreshold,
              "any batchable frame fits a batch");
// Batch blocks one send may fill: the context's own, then full-size ones made for it, which the copied
// slices keep until they are written. 16 hold 1 MiB of small frames, a queue the hub then lends
// receive buffers to (Sender::batches_this_iteration) and copies into batches in one pass.
inline constexpr std::size_t kMaxBatchBlocksPerSend = 16;
inline constexpr std::size_t kLendableQueueBytes =
    kMaxBatchBlocksPerSend * (kSendBatchBytes - kBatchBlockOverhead);
inline constexpr std::size_t kMaxFreeBatchBuffers = 64;

// What one sendmsg in flight needs to stay put until it completes.
struct SendContext {
  msghdr msg{};
  iovec iov[kMaxIovPerSend]{};
  std::size_t bytes = 0;
  std::vector<BlockRef> zc_hold;  // send_zc: blocks the kernel may still read until the notification
  // Made on first use. Slices refer to the bytes copied into it, so after a short send the unsent rest
  // keeps it alive (and the next send takes a new one).
  BlockRef batch;
  SendContext* next = nullptr;  // free list, or a connection's list awaiting zc notifications
};

// Contract: owned by one shard and used by its thread only. Every context and batch block is charged
// to that shard's MemoryAccount while it exists, pooled or not.
class SendContextPool {
 public:
  explicit SendContextPool(MemoryAccount& memory) : memory_(memory) {}
  SendContextPool(const SendContextPool&) = delete;
  SendContextPool& operator=(const SendContextPool&) = delete;
  ~SendContextPool() { free_pooled(); }

  SendContext* acquire();
  void release(SendContext* context);
  // Gives the context a batch block sized for a connection with `queued_bytes` waiting (see
  // kSendBatchBytes); empty when memory ran out, and the send then batches nothing.
  void prepare_batch(SendContext& context, std::size_t queued_bytes);
  // Called every tick: after a tick in which no context was acquired (no send was tried), the pooled
  // contexts and their batch blocks go back to the heap.
  void on_tick();
  void free_pooled();

  // The batch blocks of one send: the context's own first (prepared for `queued_bytes` only when the
  // send first copies, so a send with nothing to copy, such as a queue of appended copies or shared
  // blocks, holds no batch), then new full-size ones, but only for slices before `lent_end` (receive
  // buffers lent this iteration). Other small slices wait for the next send, as before, which bounds
  // what one send copies. `queued_bytes` 0: this send copies nothing.
  class Batches final : public BatchBlocks {
   public:
    Batches(SendContextPool& pool, SendContext& context, std::size_t queued_bytes, std::uint64_t lent_end)
        : pool_(pool), context_(context), queued_bytes_(queued_bytes), lent_end_(lent_end) {}
    BlockRef next(std::uint64_t position) override;

   private:
    SendContextPool& pool_;
    SendContext& context_;
    std::size_t queued_bytes_;
    std::uint64_t lent_end_;
    std::size_t handed_ = 0;
  };

 private:
  void destroy(SendContext* context);

  MemoryAccount& memory_;
  SendContext* free_ = nullptr;
  std::size_t free_count_ = 0;
  std::uint64_t acquired_ = 0;
  std::uint64_t acquired_at_last_tick_ = 0;
};

}  // namespace ringhub
