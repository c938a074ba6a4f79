// ConnectionClocks: the frame timeout and the idle timeout of a shard's connections; see
// transport/connection_clocks.hpp.
#include "transport/connection_clocks.hpp"

namespace ringhub {

void ConnectionClocks::note_input(Connection& conn, ShardTime now) {
  if (idle_timeout_of(conn).count() == 0) {
    return;
  }
  conn.last_input = now;
  conn.activity_hook.unlink();
  by_activity_[conn.protocol].push_back(conn);
}

void ConnectionClocks::clock_partial_frame(Connection& conn, ShardTime now) {
  const bool partial = conn.protocol == Protocol::kLine ? conn.lines && conn.lines->buffered() > 0
                                                        : !conn.assembler.at_boundary();
  if (!partial) {
    conn.assembling_hook.unlink();
    return;
  }
  if (conn.assembling_hook.is_linked() && conn.clocked_frame == conn.frames_in) {
    return;  // the same frame is still partial: its clock keeps running
  }
  conn.assembling_hook.unlink();
  conn.clocked_frame = conn.frames_in;
  conn.frame_started = now;
  assembling_.push_back(conn);  // clocks start in time order, so the oldest is always at the front
}

void ConnectionClocks::restart_frame_clock(Connection& conn, ShardTime now) {
  if (conn.assembling_hook.is_linked()) {
    conn.assembling_hook.unlink();
    conn.frame_started = now;
    assembling_.push_back(conn);
  }
}

void ConnectionClocks::expire(ShardTime now) {
  expire_partial_frames(now);
  expire_idle_connections(now);
}

std::chrono::milliseconds ConnectionClocks::idle_timeout_of(const Connection& conn) const {
  return conn.protocol == Protocol::kLine ? config_.line_idle_timeout : config_.relay_idle_timeout;
}

void ConnectionClocks::expire_partial_frames(ShardTime now) {
  while (!assembling_.empty()) {
    Connection& conn = assembling_.front();
    if (now - conn.frame_started < config_.frame_timeout) {
      return;
    }
    assembling_.pop_front();
    if (conn.read_paused || conn.line_throttled) {  // we stopped reading it: restart its clock, not blame it
      conn.frame_started = now;
      assembling_.push_back(conn);
      continue;
    }
    ++frame_timeouts_;
    events_.on_frame_timeout(conn);
  }
}

void ConnectionClocks::expire_idle_connections(ShardTime now) {
  for (Connection::ActivityList& list : by_activity_) {
    while (!list.empty()) {
      Connection& conn = list.front();
      if (now - conn.last_input < idle_timeout_of(conn)) {
        break;
      }
      list.pop_front();
      if (conn.read_paused || conn.line_throttled) {  // silent because we stopped reading it
        note_input(conn, now);
        continue;
      }
      ++idle_closes_;
      events_.on_idle(conn, now - conn.last_input);
    }
  }
}

}  // namespace ringhub
