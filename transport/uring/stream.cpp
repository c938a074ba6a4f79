// A Stream's recv arming and close sequence (transport/uring/stream.hpp), shared by hub shards and
// client loops.
#include "transport/uring/stream.hpp"

#include <cassert>

#include "transport/uring/buffer_ring.hpp"
#include "transport/uring/uring_compat.hpp"

namespace ringhub::uring {

void arm_recv(Ring& ring, Stream& stream, std::uint64_t recv_tag, const RecvShape& shape) {
  io_uring_sqe* entry = ring.next_sqe();
  const int slot = static_cast<int>(stream.slot);
  if (shape.multishot) {
    io_uring_prep_recv_multishot(entry, slot, nullptr, 0, 0);
    if (shape.multishot_limit != 0) {
      uring_compat::set_multishot_total_limit(entry, shape.multishot_limit);
    }
  } else {
    // With buffer select, the length caps the read below the buffer's size.
    io_uring_prep_recv(entry, slot, nullptr, shape.one_shot_cap, 0);
  }
  entry->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  entry->buf_group = BufferRing::kGroupId;
  io_uring_sqe_set_data64(entry, recv_tag);
  stream.recv_armed = true;
  ++stream.pending_ops;
}

void cancel_io(Ring& ring, const Stream& stream, std::uint64_t recv_tag, std::uint64_t send_tag) {
  if (stream.recv_armed) {
    ring.cancel(recv_tag);
  }
  if (stream.send_in_flight) {
    ring.cancel(send_tag);
  }
}

void close_stream(Ring& ring, Stream& stream, std::uint64_t close_tag) {
  assert(stream.closable() && stream.slot != kNoSlot);
  io_uring_sqe* entry = ring.next_sqe();
  io_uring_prep_close_direct(entry, stream.slot);
  io_uring_sqe_set_data64(entry, close_tag);
  stream.close_sent = true;
}

}  // namespace ringhub::uring
