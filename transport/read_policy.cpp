// ReadPolicy's rules: which recv a connection's state and the memory gate ask for. See
// transport/read_policy.hpp.
#include "transport/read_policy.hpp"

#include "transport/op_tag.hpp"

namespace ringhub {

void classify_by_frame(Connection& conn, std::size_t frame_bytes) {
  conn.heavy = frame_bytes > kLightFrameBytes;
  conn.reads_directly = frame_bytes > kDirectReadFrameBytes;
}

void classify_by_partial_frame(Connection& conn, std::size_t partial_bytes) {
  conn.heavy = conn.heavy || partial_bytes > kLightFrameBytes;
  conn.reads_directly = conn.reads_directly || partial_bytes > kDirectReadFrameBytes;
}

ReadStep ReadPolicy::next_step(Connection& conn, bool holds_lines_back) {
  if (conn.state == ConnState::kClosing || conn.recv_armed || conn.read_paused || conn.line_throttled) {
    return ReadStep::kNothing;
  }
  if (conn.state == ConnState::kDraining) {
    return ReadStep::kRecv;  // input is discarded, but read until EOF so the close does not reset
  }
  if (holds_lines_back && gate_.throttles_held_lines()) {
    return ReadStep::kThrottleLines;
  }
  if (conn.assembler.wants_direct()) {
    return conn.frame_reserved || gate_.reserve_large_frame(conn, false) ? ReadStep::kDirect
                                                                         : ReadStep::kAwaitReservation;
  }
  return gate_.must_pause(conn) ? ReadStep::kPause : ReadStep::kRecv;
}

bool ReadPolicy::reads_one_buffer_at_a_time(const Connection& conn) const {
  // A multishot recv keeps reading while data and buffers last (up to a megabyte before the hub sees the
  // first completion), so a connection near a bound is read one buffer per recv instead: a sender of
  // frames past kDirectReadFrameBytes (its next header then arrives alone and the body goes by direct
  // receive), a line connection (a throttle on what it holds back applies between reads), everyone while the
  // budget is past its high watermark, and a new connection until its first frame is whole. Without the
  // kernel's multishot limit (before Linux 6.15) a heavy sender would read a frame or more ahead of its next
  // header, so it is read one buffer at a time as well.
  return conn.reads_directly || (conn.heavy && !multishot_limit_supported_) || !gate_.open() ||
         conn.protocol == Protocol::kLine || conn.frames_in == 0;
}

std::uint32_t ReadPolicy::one_shot_cap(const Connection& conn) const {
  // A new connection has not shown what it sends yet: its first frame's header arrives with at most
  // this much behind it, so 8,000 clients that open with a 1 MiB frame hold 16 MB until each has its
  // reservation (or waits for one), not what a full receive buffer would let in.
  const bool unproven = conn.frames_in == 0 && conn.protocol == Protocol::kRelay;
  return !gate_.open() || unproven ? kPressureReadBytes : 0;
}

uring::RecvShape ReadPolicy::recv_shape(const Connection& conn) const {
  if (reads_one_buffer_at_a_time(conn)) {
    return {.multishot = false, .one_shot_cap = one_shot_cap(conn)};
  }
  return {.multishot = true, .multishot_limit = multishot_limit_supported_ ? gate_.read_ahead_limit() : 0};
}

bool ReadPolicy::must_stop_after_input(const Connection& conn) const {
  return conn.state == ConnState::kOpen && !conn.recv_cancel_sent &&
         (conn.assembler.wants_direct() || gate_.must_pause(conn) || reads_one_buffer_at_a_time(conn));
}

bool ReadPolicy::must_stop_for(const Connection& conn, MemoryGate::Narrowed narrowed) const {
  if (conn.state != ConnState::kOpen || !conn.recv_armed || conn.recv_op != Op::kRecv ||
      conn.recv_cancel_sent) {
    return false;
  }
  return (narrowed.gate && gate_.must_pause(conn)) ||
         (narrowed.read_ahead && MemoryGate::beyond_narrow_read_ahead(conn.recv_limit));
}

}  // namespace ringhub
