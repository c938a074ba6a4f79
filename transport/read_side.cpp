// ReadSide: input arrives by multishot recv into the shard's receive buffers, except the rest of a frame
// larger than a buffer, which is received straight into its own block. Reading is how the hub pushes
// back: a connection whose input would add memory past the budget is not read until memory frees, and
// the kernel's socket buffers then stop its sender. EOF is a half-close: what the client asked for is
// still answered before the hub closes. See transport/read_side.hpp.
#include "transport/read_side.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "transport/op_tag.hpp"

namespace ringhub {

namespace {
// A direct receive asks for at most this much at a time, charged before the kernel writes it: the
// budget sees a large frame grow as it arrives, and one recv still covers a loopback socket buffer.
constexpr std::uint32_t kDirectRecvChunk = 256U << 10;
}  // namespace

void ReadSide::resume_reading(Connection& conn) {
  switch (policy_.next_step(conn, events_.holds_lines_back(conn))) {
    case ReadStep::kNothing: return;
    case ReadStep::kRecv: arm_recv(conn); return;
    case ReadStep::kDirect: arm_direct_recv(conn); return;
    case ReadStep::kAwaitReservation: gate_.await_reservation(conn); return;
    case ReadStep::kPause:
      gate_.pause(conn);
      watch_for_hangup(conn);
      spdlog::debug("shard {}: user {}: reading paused, hub memory {} of {}", index_, conn.id,
                    gate_.hub_memory(), budget_limit_);
      return;
    case ReadStep::kThrottleLines:  // its oks (shard_line.cpp) or the gate's release resume it
      gate_.throttle_lines(conn);
      watch_for_hangup(conn);
      return;
  }
}

void ReadSide::arm_recv(Connection& conn) {
  const uring::RecvShape shape = policy_.recv_shape(conn);
  conn.recv_limit = shape.multishot ? shape.multishot_limit : 0;
  uring::arm_recv(loop_.ring(), conn, tag(&conn, Op::kRecv), shape);
  conn.recv_op = Op::kRecv;
}

void ReadSide::arm_direct_recv(Connection& conn) {
  const std::span<std::uint8_t> space = conn.assembler.direct_space(kDirectRecvChunk);
  conn.direct_target = conn.assembler.partial_block();
  gate_.consume_reservation(
      conn, static_cast<std::uint32_t>(space.data() + space.size() - conn.direct_target.data()));
  io_uring_sqe* entry = loop_.ring().next_sqe();
  io_uring_prep_recv(entry, static_cast<int>(conn.slot), space.data(), space.size(), 0);
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kRecvDirect));
  conn.recv_armed = true;
  conn.recv_op = Op::kRecvDirect;
  ++conn.pending_ops;
}

void ReadSide::watch_for_hangup(Connection& conn) {
  if (conn.hangup_watch || conn.state == ConnState::kClosing) {
    return;
  }
  io_uring_sqe* entry = loop_.ring().next_sqe();
  io_uring_prep_poll_add(entry, static_cast<int>(conn.slot), POLLERR | POLLHUP);
  entry->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(entry, tag(&conn, Op::kHangupWatch));
  conn.hangup_watch = true;
  ++conn.pending_ops;
}

void ReadSide::on_hangup_watch(Connection& conn, const io_uring_cqe& cqe) {
  --conn.pending_ops;
  conn.hangup_watch = false;
  if (cqe.res > 0 && conn.state != ConnState::kClosing) {
    spdlog::debug("shard {}: user {}: reset while its input was not read", index_, conn.id);
    lifecycle_.begin_close(conn);  // as a recv that failed: nothing more can be written or read
  }
  lifecycle_.after_op(conn);
}

void ReadSide::stop_multishot(Connection& conn) {
  loop_.ring().cancel(tag(&conn, Op::kRecv));
  conn.recv_cancel_sent = true;
}

void ReadSide::on_recv(Connection& conn, const io_uring_cqe& cqe) {
  const bool more = (cqe.flags & IORING_CQE_F_MORE) != 0;
  if (!more) {
    conn.recv_armed = false;
    conn.recv_cancel_sent = false;
    --conn.pending_ops;
  }
  if (cqe.res > 0 && (cqe.flags & IORING_CQE_F_BUFFER) != 0) {
    const auto bid = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    const BlockRef buffer = loop_.buffers().take(bid);
    counters_.bytes_in.add(static_cast<std::uint64_t>(cqe.res));
    if (conn.state == ConnState::kOpen) {  // draining connections discard input
      clocks_.note_input(conn, now_);
      on_input(conn, buffer, static_cast<std::uint32_t>(cqe.res));
    }
    if (!more) {
      resume_reading(conn);  // the kernel ended the multishot without an error, or our stop landed
    } else if (policy_.must_stop_after_input(conn)) {
      stop_multishot(conn);  // its last completion resumes reading the way the state then asks
    }
  } else if (cqe.res == -ENOBUFS) {
    // Every receive buffer is out. The bytes wait in the socket; the connection is re-armed when
    // buffers return (re-arming now would fail at once and spin).
    counters_.recv_buffer_waits.add(1);
    if (conn.state == ConnState::kOpen && conn.assembler.wants_direct()) {
      resume_reading(conn);  // a large frame needs no receive buffer
    } else if (conn.state != ConnState::kClosing) {
      loop_.park_for_buffers(conn);
    }
  } else if (cqe.res == -ECANCELED) {
    resume_reading(conn);  // stopped for a direct receive or a pause (or closing: nothing to do)
  } else if (cqe.res == -EINVAL && std::exchange(conn.recv_limit, 0) != 0 && policy_.limits_multishot()) {
    policy_.stop_limiting_multishot();  // a kernel before 6.15: unlimited multishot from now on
    spdlog::info("shard {}: this kernel cannot limit a multishot recv; reading ahead is unlimited", index_);
    resume_reading(conn);
  } else if (cqe.res <= 0 && conn.state != ConnState::kClosing) {
    on_recv_ended(conn, cqe.res);
  }
  lifecycle_.maybe_finish_close(conn);
}

void ReadSide::on_recv_direct(Connection& conn, const io_uring_cqe& cqe) {
  conn.recv_armed = false;
  --conn.pending_ops;
  const BlockRef target = std::move(conn.direct_target);  // freed after this handler at the latest
  if (cqe.res > 0) {
    counters_.bytes_in.add(static_cast<std::uint64_t>(cqe.res));
    if (conn.state == ConnState::kOpen) {
      clocks_.note_input(conn, now_);
      conn.assembler.commit_direct(static_cast<std::uint32_t>(cqe.res), [&](FrameView&& frame) {
        return events_.on_frame(conn, std::move(frame));
      });
      if (!conn.assembler.wants_direct()) {
        gate_.end_reservation(conn);  // the frame is whole (a direct receive never reads past it)
      }
      after_input(conn);
    }
    resume_reading(conn);
  } else if (cqe.res != -ECANCELED && conn.state != ConnState::kClosing) {
    on_recv_ended(conn, cqe.res);
  }
  lifecycle_.maybe_finish_close(conn);
}

void ReadSide::on_input(Connection& conn, const BlockRef& buffer, std::uint32_t length) {
  if (conn.protocol == Protocol::kLine) {
    events_.on_line_bytes(conn, buffer, length);
    return;
  }
  events_.on_frame_bytes(conn, buffer, length);
  after_input(conn);
}

void ReadSide::after_input(Connection& conn) {
  if (conn.state != ConnState::kOpen) {
    return;
  }
  classify_by_partial_frame(conn, conn.assembler.partial_frame_size());
  clocks_.clock_partial_frame(conn, now_);
}

void ReadSide::on_recv_ended(Connection& conn, int res) {
  if (res == 0) {
    on_read_eof(conn);
    return;
  }
  spdlog::debug("shard {}: user {}: recv ended: {}", index_, conn.id, std::strerror(-res));
  lifecycle_.begin_close(conn);  // a reset or any other error ends the connection
}

void ReadSide::on_read_eof(Connection& conn) {
  spdlog::debug("shard {}: user {}: EOF", index_, conn.id);
  if (conn.state == ConnState::kOpen) {
    // A half-close: the client sent everything it will send and may still read. Answer what it asked
    // (a gathered LIST included), write what is queued for it, then close, within the shutdown grace.
    // A line client leaves the line service but stays reachable while it drains: a message it sent
    // just before that finds nobody live comes back to it (transport/connection_lifecycle.hpp).
    if (conn.protocol == Protocol::kLine) {
      lifecycle_.begin_half_closed_line_drain(conn);
    } else {
      lifecycle_.begin_drain(conn, DrainDeadline::kGrace);
    }
  } else if (conn.shutdown_sent) {
    lifecycle_.begin_close(conn);  // the client answered our FIN: nothing is left to write
  }
  // Draining and still writing: the drain closes once its bytes are out (recv is no longer armed).
}

void ReadSide::enforce(MemoryGate::Narrowed narrowed) {
  if (!narrowed.gate && !narrowed.read_ahead) {
    return;
  }
  for (Connection& conn : lifecycle_.connections()) {
    if (policy_.must_stop_for(conn, narrowed)) {
      stop_multishot(conn);  // its last completion resumes reading the way the gate then allows
    }
  }
}

}  // namespace ringhub
