// ReadSide: a shard's reading of its connections. It arms, stops and handles their recvs (which one is
// transport/read_policy's answer), pushes back by not reading, watches unread connections for a reset,
// and hands each connection's input to its protocol through ReadEvents. Closing stays with the shard's
// lifecycle (transport/connection_lifecycle).
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

#include "core/frame_assembler.hpp"
#include "core/shared_block.hpp"
#include "core/stats.hpp"
#include "transport/connection.hpp"
#include "transport/connection_clocks.hpp"
#include "transport/connection_lifecycle.hpp"
#include "transport/memory_gate.hpp"
#include "transport/read_policy.hpp"
#include "transport/uring/event_loop.hpp"

namespace ringhub {

// What the read side hands to the connection's protocol, and asks of it.
class ReadEvents {
 public:
  // Bytes a relay connection sent, in a receive buffer.
  virtual void on_frame_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) = 0;
  // Bytes a line connection sent, in a receive buffer.
  virtual void on_line_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) = 0;
  // A frame that a direct receive completed; false stops the assembler (as its frame handler).
  virtual bool on_frame(Connection& conn, FrameView&& frame) = 0;
  // Whether `conn` is a line connection holding messages back (core/line_service.hpp).
  virtual bool holds_lines_back(const Connection& conn) const = 0;

 protected:
  ~ReadEvents() = default;
};

// What a shard lends its read side.
struct ReadSideParts {
  uring::EventLoop& loop;
  unsigned shard_index;
  ShardCounters& counters;
  MemoryGate& gate;
  ConnectionClocks& clocks;
  ConnectionLifecycle& lifecycle;
  const ShardTime& now;  // the shard clock, read once per loop iteration
  std::size_t budget_limit;
  ReadEvents& events;
};

// Contract: owned by one shard and used on its thread only.
class ReadSide {
 public:
  explicit ReadSide(const ReadSideParts& parts)
      : loop_(parts.loop),
        index_(parts.shard_index),
        counters_(parts.counters),
        gate_(parts.gate),
        clocks_(parts.clocks),
        lifecycle_(parts.lifecycle),
        now_(parts.now),
        budget_limit_(parts.budget_limit),
        events_(parts.events),
        policy_(parts.gate) {}
  ReadSide(const ReadSide&) = delete;
  ReadSide& operator=(const ReadSide&) = delete;

  // Starts (or restarts) reading `conn` the way its state asks: a multishot recv into receive buffers,
  // a direct recv into a large frame's block, or nothing while it is paused for memory or throttled.
  void resume_reading(Connection& conn);
  // A recv into the receive buffers, whatever the state (a drain reads until the client's EOF).
  void arm_recv(Connection& conn);
  void on_recv(Connection& conn, const io_uring_cqe& cqe);
  void on_recv_direct(Connection& conn, const io_uring_cqe& cqe);
  void on_hangup_watch(Connection& conn, const io_uring_cqe& cqe);
  // Where the memory gate narrowed, stops the multishot recvs it now keeps out (so what they send next
  // stays in the kernel rather than reaching the hub's memory) or that read ahead too far.
  void enforce(MemoryGate::Narrowed narrowed);

 private:
  void arm_direct_recv(Connection& conn);
  // Stops the multishot recv (its last completion calls resume_reading).
  void stop_multishot(Connection& conn);
  void on_input(Connection& conn, const BlockRef& buffer, std::uint32_t length);
  void after_input(Connection& conn);
  void on_read_eof(Connection& conn);
  void on_recv_ended(Connection& conn, int res);
  // While the hub does not read a connection (paused for memory, or a line client over its pending
  // allowance), its reset would wait unseen behind the unread bytes, and with it the end of its pending
  // messages and its slot: a one-shot poll for POLLERR/POLLHUP sees it. It stays armed until it fires
  // or the connection closes.
  void watch_for_hangup(Connection& conn);

  uring::EventLoop& loop_;
  const unsigned index_;
  ShardCounters& counters_;
  MemoryGate& gate_;
  ConnectionClocks& clocks_;
  ConnectionLifecycle& lifecycle_;
  const ShardTime& now_;
  const std::size_t budget_limit_;
  ReadEvents& events_;
  ReadPolicy policy_;  // which recv each connection's state and the gate ask for
};

}  // namespace ringhub
