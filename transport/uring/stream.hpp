// Stream: what the engine knows of one socket on a ring, the same for the hub's connections and the
// client loop's: its direct descriptor, how many SQEs still name it, what is in flight. And what both
// do with it alike: arm its recv into the provided buffers, and the close sequence (cancel the recv and
// the send in flight, then close_direct once nothing names it).
#pragma once

#include <cstdint>

#include "transport/uring/ring.hpp"

namespace ringhub::uring {

inline constexpr std::uint32_t kNoSlot = ~std::uint32_t{0};

// Contract: the owner counts in pending_ops every SQE whose completion names the stream, and frees or
// reuses it only when pending_ops is 0 and its close has completed.
struct Stream {
  std::uint32_t slot = kNoSlot;  // index in the ring's direct-descriptor table; kNoSlot when none
  std::uint16_t pending_ops = 0;
  bool recv_armed = false;
  bool send_in_flight = false;
  bool close_sent = false;

  // No SQE names the stream and its close has not been issued: close_stream may go now.
  bool closable() const { return pending_ops == 0 && !close_sent; }
};

// How arm_recv reads into the ring's provided buffers (transport/uring/buffer_ring.hpp).
struct RecvShape {
  bool multishot = true;
  std::uint32_t one_shot_cap = 0;  // one-shot: at most this many bytes (0: up to a whole buffer)
  // Multishot: the recv ends once it has received this many bytes in all (0: no limit). Linux 6.15+;
  // older kernels refuse the recv with -EINVAL, which the caller takes as "not supported".
  std::uint32_t multishot_limit = 0;
};

// Arms the stream's recv into the provided buffers, counted in pending_ops; recv_armed stays set until
// its last completion (one without IORING_CQE_F_MORE), which the owner handles.
void arm_recv(Ring& ring, Stream& stream, std::uint64_t recv_tag, const RecvShape& shape = {});

// Cancels the recv and the send in flight, those that are; their completions (-ECANCELED, or their
// result if they won the race) still come and settle pending_ops as any other.
void cancel_io(Ring& ring, const Stream& stream, std::uint64_t recv_tag, std::uint64_t send_tag);

// Issues close_direct on the stream's slot; the stream must be closable() and have a slot.
void close_stream(Ring& ring, Stream& stream, std::uint64_t close_tag);

}  // namespace ringhub::uring
