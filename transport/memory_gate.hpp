// MemoryGate: a shard's side of the hub's memory budget on the read path. Once per loop iteration it
// reads the hub-wide figure and decides whom the shard may read (the gate and the read-ahead width); it
// keeps the connections it paused until memory frees, and reserves each large frame whole before the
// frame is read. No ring here: the shard arms and stops recvs on its verdicts (docs/design.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/memory_account.hpp"
#include "transport/connection.hpp"
#include "transport/hub_shared.hpp"

namespace ringhub {

// What the gate reports to the shard that reads: a connection it paused may be read again.
class GateEvents {
 public:
  virtual void on_resumed(Connection& conn) = 0;

 protected:
  ~GateEvents() = default;
};

// Contract: owned by one shard and used on its thread only; the reservations also move HubShared's
// atomics, which every shard shares.
class MemoryGate {
 public:
  MemoryGate(HubShared& shared, GateEvents& events) : shared_(shared), events_(events) {}

  // Where a new reading of hub memory moved the verdicts: what recvs already armed must now stop.
  struct Narrowed {
    bool gate = false;            // connections the gate now keeps out must stop reading
    bool read_ahead = false;      // multishot recvs armed with the wide limit must re-arm with the narrow one
    bool lines_released = false;  // line messages are no longer held back: take in what was held
  };
  // Reads hub memory (charged plus reserved) once for this loop iteration.
  Narrowed update();
  std::int64_t hub_memory() const { return hub_memory_; }
  // Below the high watermark: everyone may be read as far ahead as their state allows.
  bool open() const { return verdict_ == ReadGate::kOpen; }
  // The most a multishot recv may read before it is re-armed.
  std::uint32_t read_ahead_limit() const { return wide_read_ahead_ ? kWideReadAhead : kNarrowReadAhead; }
  static bool beyond_narrow_read_ahead(std::uint32_t recv_limit) { return recv_limit > kNarrowReadAhead; }
  bool must_pause(const Connection& conn) const;
  // Past half the budget: line messages past a connection's allowance are held back (MemoryBudget).
  bool holds_back_lines() const { return holding_back_lines_; }
  // Past the high watermark: a line connection holding messages back is not read.
  bool throttles_held_lines() const { return throttling_held_lines_; }

  // Stops reading `conn` until the budget lets its weight in again.
  void pause(Connection& conn);
  // Stops reading line connection `conn`, which holds messages back, until it holds none (LineService)
  // or hub memory falls below where such connections are throttled.
  void throttle_lines(Connection& conn);
  // `conn` is no longer throttled (it holds nothing back): it leaves the gate's list.
  void end_line_throttle(Connection& conn);
  // `conn` began a large frame that does not fit yet: it waits, first come first served.
  void await_reservation(Connection& conn);
  // Grants what reservations now fit and lets in the weights the budget allows again, telling the
  // shard of each connection let in.
  void resume_ready();
  // `conn` stops reading for good: its reservation goes back and it leaves every list of the gate.
  void forget(Connection& conn);

  // Large frames: one is read to its end once begun, so its whole size is reserved first (see
  // docs/design.md, "Memory model"). Atomic across shards.
  bool reserve_large_frame(Connection& conn, bool only_if_none_under_way);
  // The block of the reserved frame is now charged through frame byte `charged_through`.
  void consume_reservation(Connection& conn, std::uint32_t charged_through);
  // The frame is whole, or the connection stops reading: what is left of its reservation goes back.
  void end_reservation(Connection& conn);

  std::size_t paused_count() const { return paused_count_; }
  std::uint64_t pauses() const { return pauses_; }

 private:
  // A multishot recv ends after this much input and is re-armed (where the kernel can, see
  // uring_compat::set_multishot_total_limit). While hub memory is low, the wide limit: one recv serves
  // thousands of small frames (16 KiB here cost K=255 64 B half its throughput: 9.6M against 21M
  // deliveries/s, a re-arm per 180 frames), and a stream of 64 KiB frames stays on one recv (256 KiB
  // here cost K=1 64 KiB a quarter of its throughput: 27-29k against 35-36k deliveries/s, and 1 MiB
  // no better; docs/design.md). Otherwise the narrow one: a light client that starts a large frame
  // brings at most this much before the hub sees its header and makes it wait for room, where an
  // unlimited multishot read up to a megabyte ahead (8,000 such clients came to 940 MB). The kernel
  // ends it at a buffer's end, so a connection then reads at most one receive buffer ahead.
  static constexpr std::uint32_t kWideReadAhead = 4U << 20;
  static constexpr std::uint32_t kNarrowReadAhead = 16U << 10;

  static Weight weight_of(const Connection& conn) { return conn.heavy ? Weight::kHeavy : Weight::kLight; }
  void grant_reservations();
  void let_in(Connection::WaitingList& list);
  void unpause(Connection& conn);

  HubShared& shared_;
  GateEvents& events_;
  Connection::WaitingList paused_[2];             // by Weight
  Connection::WaitingList awaiting_reservation_;  // large frames begun, waiting for room to finish
  Connection::WaitingList throttled_lines_;       // line connections holding messages back, not read
  std::size_t paused_count_ = 0;
  std::uint64_t pauses_ = 0;
  ReadGate verdict_ = ReadGate::kOpen;  // the budget's verdict at the start of this iteration
  bool wide_read_ahead_ = true;         // the budget's read-ahead verdict at the start of this iteration
  bool holding_back_lines_ = false;     // the budget's line verdicts at the start of this iteration
  bool throttling_held_lines_ = false;
  std::int64_t hub_memory_ = 0;  // hub-wide bytes charged and reserved, read once per iteration
};

}  // namespace ringhub
