// ReadPolicy: how a shard reads each connection, decided without a ring. A multishot recv and how far
// ahead it may read, one receive buffer at a time (and how much of it), a direct receive into a large
// frame's block, or nothing (paused for memory, throttled for pending lines); and when an armed
// multishot must stop. The read side arms and stops recvs on its answers (transport/read_side.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "transport/connection.hpp"
#include "transport/memory_gate.hpp"
#include "transport/uring/stream.hpp"

namespace ringhub {

// A connection whose current or last frame is larger than this is "heavy": once the memory budget is
// into its reserve, heavy connections are paused while light traffic (IDENTITY, LIST, small relays)
// goes on.
inline constexpr std::uint32_t kLightFrameBytes = 64U << 10;

// A connection whose current or last frame is larger than this is read one receive buffer at a time,
// so the next such frame's header arrives nearly alone and its body goes by direct receive instead of
// being gathered by copying. Smaller frames are cheaper read ahead by the multishot recv and gathered:
// at K=1 with 64 KiB bodies, reading them one buffer at a time cost about 11% of the throughput
// (docs/perf/engine-before-after.md, 12-06).
inline constexpr std::uint32_t kDirectReadFrameBytes = 256U << 10;

// Past the high watermark a connection is read at most this much at a time: a client the hub cannot
// yet tell from a large sender (its next header has not arrived) adds at most this before it is known
// and made to wait, so 100k such clients hold 200 MB, inside the budget's reserve.
inline constexpr std::uint32_t kPressureReadBytes = 2U << 10;

// `conn` completed a frame of `frame_bytes`: its class (heavy, read directly) is that frame's.
void classify_by_frame(Connection& conn, std::size_t frame_bytes);
// `conn` has a frame under way, `partial_bytes` long so far: it can only raise the class.
void classify_by_partial_frame(Connection& conn, std::size_t partial_bytes);

// What resuming a connection's reading arms, if anything.
enum class ReadStep : std::uint8_t {
  kNothing,           // closing, already reading, paused or throttled: nothing to arm
  kRecv,              // a recv into the receive buffers, shaped by recv_shape()
  kDirect,            // a direct receive into its large frame's block, whose room is reserved
  kAwaitReservation,  // its large frame's room is not free yet (MemoryGate::await_reservation)
  kPause,             // the budget keeps its weight out (MemoryGate::pause)
  kThrottleLines,     // a line connection holding messages back, past the high watermark (MemoryBudget)
};

// Contract: owned by one shard with its gate, used on its thread only.
class ReadPolicy {
 public:
  explicit ReadPolicy(MemoryGate& gate) : gate_(gate) {}

  // What to arm for `conn` now. Reserves its large frame's room through the gate when that is what
  // lets it read on (a frame begun is finished: the reservation, not the gate, decides).
  ReadStep next_step(Connection& conn, bool holds_lines_back);
  // How its recv into the receive buffers reads: multishot with the gate's read-ahead limit, or one
  // buffer at a time (capped while the hub cannot tell it from a large sender).
  uring::RecvShape recv_shape(const Connection& conn) const;
  // A multishot completion left its recv armed: whether to stop it, so the next arm follows the state
  // the input left (a large frame begun, a pause, a connection now read one buffer at a time).
  bool must_stop_after_input(const Connection& conn) const;
  // The gate narrowed: whether `conn`'s armed multishot must stop (it reads what the gate now keeps
  // out, or further ahead than it now allows).
  bool must_stop_for(const Connection& conn, MemoryGate::Narrowed narrowed) const;

  // Whether multishot recvs are armed with a length limit; the kernel refuses it before Linux 6.15,
  // and from then on a heavy sender is read one buffer at a time instead.
  bool limits_multishot() const { return multishot_limit_supported_; }
  void stop_limiting_multishot() { multishot_limit_supported_ = false; }

 private:
  bool reads_one_buffer_at_a_time(const Connection& conn) const;
  std::uint32_t one_shot_cap(const Connection& conn) const;

  MemoryGate& gate_;
  bool multishot_limit_supported_ = true;
};

}  // namespace ringhub
