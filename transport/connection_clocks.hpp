// ConnectionClocks: a shard's two per-connection timeouts, a frame left partial past --frame-timeout
// and a connection silent past its protocol's idle timeout. Each is a list in time order, so a tick
// looks only at its front. No ring here: the shard closes or drains whom the clocks name.
#pragma once

#include <chrono>
#include <cstdint>

#include "transport/client_protocol.hpp"
#include "transport/connection.hpp"
#include "transport/hub_config.hpp"

namespace ringhub {

// What the clocks report to the shard when a timeout passes.
class ClockEvents {
 public:
  // `conn` held a partial frame for the whole frame timeout while the hub was reading it.
  virtual void on_frame_timeout(Connection& conn) = 0;
  // `conn` sent nothing for its idle timeout while the hub was reading it.
  virtual void on_idle(Connection& conn, std::chrono::milliseconds silent_for) = 0;

 protected:
  ~ClockEvents() = default;
};

// Contract: owned by one shard and used on its thread only; `now` is the shard clock of the caller's
// loop iteration, which never goes back.
class ConnectionClocks {
 public:
  ConnectionClocks(const HubConfig& config, ClockEvents& events) : config_(config), events_(events) {}

  // Bytes arrived (or the connection was accepted): its idle clock starts again.
  void note_input(Connection& conn, ShardTime now);
  // After input was parsed: a frame left partial starts its clock, unless that same frame's clock
  // runs already; at a frame boundary the clock stops.
  void clock_partial_frame(Connection& conn, ShardTime now);
  // The hub paused reading `conn`: the time it waited was not the client's, so its frame clock (if
  // one runs) starts again.
  void restart_frame_clock(Connection& conn, ShardTime now);
  // `conn` is drained or closed: neither of its clocks runs any more.
  static void forget(Connection& conn) {
    conn.assembling_hook.unlink();
    conn.activity_hook.unlink();
  }
  // Hands every connection whose timeout has passed to the events, frames first. A connection the hub
  // is not reading (paused for memory, or a line client over its allowance) is not blamed: its clock
  // starts again.
  void expire(ShardTime now);

  std::uint64_t frame_timeouts() const { return frame_timeouts_; }
  std::uint64_t idle_closes() const { return idle_closes_; }

 private:
  std::chrono::milliseconds idle_timeout_of(const Connection& conn) const;
  void expire_partial_frames(ShardTime now);
  void expire_idle_connections(ShardTime now);

  const HubConfig& config_;
  ClockEvents& events_;
  Connection::AssemblingList assembling_;              // partial frames, oldest clock first
  PerProtocol<Connection::ActivityList> by_activity_;  // least recently heard first
  std::uint64_t frame_timeouts_ = 0;
  std::uint64_t idle_closes_ = 0;
};

}  // namespace ringhub
