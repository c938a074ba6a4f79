// Sender: a shard's write side. It queues what a connection is owed, keeps the slow-consumer bound, and
// writes each connection's queue with one sendmsg in flight at a time (more could reorder bytes), its
// iovecs pointing straight at the shared blocks. Closing and draining stay with the shard's lifecycle.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "core/memory_account.hpp"
#include "core/relay_service.hpp"
#include "core/shared_block.hpp"
#include "core/stats.hpp"
#include "transport/connection.hpp"
#include "transport/hub_config.hpp"
#include "transport/send_contexts.hpp"
#include "transport/uring/ring.hpp"

namespace ringhub {

// What the sender reports to the connection's lifecycle, which decides what follows.
class SendEvents {
 public:
  // A send failed (the peer is gone), or the hub ran out of memory to keep what `conn` is owed.
  virtual void on_unwritable(Connection& conn) = 0;
  // What `conn` has queued passed --max-outbound-bytes: it is not reading.
  virtual void on_slow_consumer(Connection& conn) = 0;
  // A send completed (a draining connection may now be written out, or a closing one closed).
  virtual void on_send_done(Connection& conn) = 0;
  // A zero-copy notification came back: a closing connection may now be closed.
  virtual void on_notified(Connection& conn) = 0;

 protected:
  ~SendEvents() = default;
};

// Contract: owned by one shard and used on its thread only.
class Sender {
 public:
  Sender(uring::Ring& ring, const HubConfig& config, unsigned shard_index, ShardCounters& counters,
         MemoryAccount& memory, SendEvents& events, const ShardTime& now)
      : ring_(ring),
        config_(config),
        shard_index_(shard_index),
        counters_(counters),
        memory_(memory),
        events_(events),
        now_(now),
        contexts_(memory) {}
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Blocks owned by `receive_buffers` are lent: they go back to the kernel, so what still points at
  // them after this iteration's flush is copied out first.
  void set_receive_buffers(const void* receive_buffers) { receive_buffers_ = receive_buffers; }

  // Queues `length` bytes of `block` from `offset` for `conn` (nothing once it is closing).
  void enqueue(Connection& conn, BlockRef block, std::uint32_t offset, std::uint32_t length);
  // Queues a copy of `bytes` for `conn` alone (a reply, an error line, a small relay), appended to its
  // queue's last copy when there is room, counted by `reason`. False when memory is exhausted (nothing
  // is queued; the caller decides what follows).
  bool enqueue_copy(Connection& conn, std::span<const std::uint8_t> bytes, CopyReason reason);
  // A copy of `bytes` charged to the shard (empty if memory is exhausted), counted by `reason`.
  BlockRef copy(std::span<const std::uint8_t> bytes, CopyReason reason);
  // `length` bytes were filled into a reply placeholder of a connection's queue.
  void filled_in_place(std::uint32_t length);
  // After bytes were queued for `conn` (by enqueue, or in place): cuts it if it is over its cap,
  // else writes it in this iteration's flush. (Inline, as the two below: once per delivery.)
  void after_queueing(Connection& conn) {
    if (!cut_if_slow_consumer(conn)) {
      mark_dirty(conn);
    }
  }
  // `bytes` of queue were dropped without being sent (a truncation, a close).
  void forget(std::size_t bytes) { queued_bytes_ -= bytes; }
  // Closes `conn` with ERROR 6 if what it has queued passed --max-outbound-bytes; returns whether.
  // Counted as memory (slices, block overheads, the ring), the way the budget counts it, so a flood of
  // tiny replies cannot hold several times the limit.
  bool cut_if_slow_consumer(Connection& conn) {
    if (conn.state != ConnState::kOpen || conn.outbound.memory_bytes() <= config_.max_outbound_bytes) {
      return false;
    }
    events_.on_slow_consumer(conn);  // NATS's policy: bounded, then closed
    return true;
  }
  // Whether `conn` is open and its send in flight has taken no byte for --write-deadline-ms: its client
  // has not read for that long (a send completes as soon as the socket takes anything).
  bool stalled(const Connection& conn) const {
    return config_.write_deadline.count() != 0 && conn.state == ConnState::kOpen && conn.send_in_flight &&
           now_ - conn.send_started >= config_.write_deadline;
  }
  // Cuts `conn` as a slow consumer (ERROR 6) whatever it has queued: hub memory is past the high
  // watermark and `conn` is stalled.
  void cut_stalled(Connection& conn) { events_.on_slow_consumer(conn); }
  // `conn` has something to write: it is written by this iteration's flush.
  void mark_dirty(Connection& conn) {
    if (!conn.dirty_hook.is_linked() && !conn.send_in_flight) {
      dirty_.push_back(conn);
    }
  }
  // Whether `length` more bytes queued for `conn` now are copied into its send batch by this iteration's
  // flush, so they may stay in their receive buffer until then (see RelaySeam).
  bool batches_this_iteration(const Connection& conn, std::uint32_t length) const;

  // Starts a send for every connection marked this iteration.
  void flush();
  void on_completion(Connection& conn, const io_uring_cqe& cqe);
  // Gives back idle pooled send contexts, and the slice rings of queues still empty since a send
  // emptied them.
  void on_tick();
  void free_pooled() { contexts_.free_pooled(); }

  std::size_t queued_bytes() const { return queued_bytes_; }
  std::uint64_t copied_out_bytes() const { return copied_out_bytes_; }
  std::uint64_t copied_reply_bytes() const { return copied_reply_bytes_; }

 private:
  // Returns the queue position the started send's iovecs reach (0: none started).
  std::uint64_t start_send(Connection& conn);
  // Copies out the slices of `conn` that still borrow a receive buffer after its flush.
  void own_lent_slices(Connection& conn);
  void count_copy(std::size_t bytes, CopyReason reason);
  void on_notification(Connection& conn);

  uring::Ring& ring_;
  const HubConfig& config_;
  const unsigned shard_index_;
  ShardCounters& counters_;
  MemoryAccount& memory_;
  SendEvents& events_;
  const ShardTime& now_;  // the shard clock, read once per loop iteration
  SendContextPool contexts_;
  const void* receive_buffers_ = nullptr;
  Connection::DirtyList dirty_;
  Connection::SpareRingList spare_rings_;  // queues a send emptied, which kept their slice ring
  std::size_t queued_bytes_ = 0;           // sum of the shard's outbound queues
  std::uint64_t copied_out_bytes_ = 0;
  std::uint64_t copied_reply_bytes_ = 0;
};

}  // namespace ringhub
