// EventLoop: the turn every ringhub event loop takes alike, a hub shard's or a client loop's. It owns
// the Ring and its BufferRing and the streams parked for buffers; before each wait or poll it hands
// the recycled buffers back to the kernel and resumes the parked recvs, then hands each completion to
// its LoopHandler, which says what the completion means. A handler's own work (sends, mailboxes,
// timers) comes before it calls wait() or poll().
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/idle_poll.hpp"
#include "core/result.hpp"
#include "transport/uring/buffer_ring.hpp"
#include "transport/uring/ring.hpp"
#include "transport/uring/stream.hpp"

namespace ringhub::uring {

// What an EventLoop's owner implements: the meaning of its completions, and of a buffer coming back.
class LoopHandler {
 public:
  // A completion of the loop's ring (its user_data is a tag of the owner's kind enum).
  virtual void on_completion(const io_uring_cqe& cqe) = 0;
  // `stream`, parked with park_for_buffers, may read again: a buffer is back in the ring. Re-arm its
  // recv if it still reads.
  virtual void on_buffers_back(Stream& stream) = 0;

 protected:
  ~LoopHandler() = default;
};

struct EventLoopConfig {
  unsigned sq_entries = 4096;
  unsigned cq_entries = 65536;
  unsigned table_size = 0;  // direct descriptors (0: none)
  TaskRun task_run = TaskRun::kDeferred;
  unsigned buffer_count = 0;  // provided receive buffers (rounded up to a power of two)
  std::uint32_t buffer_size = 0;
  BufferRing::Residency buffer_residency = BufferRing::Residency::kPopulated;
};

// Contract: init() and everything else on the thread that drives the loop (the ring's single issuer).
class EventLoop {
 public:
  // `name` prefixes the message of the one fatal error (io_uring_enter failing: the ring is broken).
  EventLoop(LoopHandler& handler, std::string name) : handler_(handler), name_(std::move(name)) {}
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop() { close(); }

  // The ring, then its buffer ring; on failure the error says what the kernel lacks.
  Result<void> init(const EventLoopConfig& config);
  // Buffers first, then the ring (idempotent): for owners whose other members must go after the ring.
  void close();

  Ring& ring() { return ring_; }
  const Ring& ring() const { return ring_; }
  BufferRing& buffers() { return *buffers_; }
  const BufferRing& buffers() const { return *buffers_; }

  // `stream`'s recv ended with ENOBUFS: its bytes wait in the socket until on_buffers_back.
  void park_for_buffers(Stream& stream) { waiting_.park(stream); }

  // Submits, waits for a completion or until `timeout` (none: no limit), and handles every ready one;
  // returns how many.
  unsigned wait(__kernel_timespec* timeout = nullptr);
  // Submits and handles what is ready, never blocking; returns how many completions.
  unsigned poll();
  // After work, while `idle` says polling pays: polls until a completion is ready, then handles the
  // ready ones; returns how many (0: the poll ran out, the caller may sleep).
  unsigned poll_while(const IdlePoll<>& idle);
  // Submits without handling completions: leaves nothing queued in user space.
  void submit();

 private:
  // Recycled buffers back to the kernel, then the parked recvs they can serve resumed: before every
  // entry, so an ENOBUFS reaped after the buffers came back still gets its recv re-armed.
  void return_buffers();
  unsigned handle_ready();
  void check_enter(int ret) const;

  LoopHandler& handler_;
  std::string name_;
  TaskRun task_run_ = TaskRun::kDeferred;
  Ring ring_;
  std::unique_ptr<BufferRing> buffers_;  // declared after ring_: unregistered before it goes
  BufferWaitList waiting_;
};

}  // namespace ringhub::uring
