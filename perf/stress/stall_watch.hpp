// StallWatch: when a relay run has stopped making progress and should close. Progress is any byte the
// clients received (or a RELAY they wrote), not only whole deliveries; and bytes the kernel still holds
// in the hub's sockets toward the clients mean TCP is still delivering (a loopback host under TCP memory
// pressure drops segments and recovers by retransmission timers that back off to seconds), not that the
// hub hung.
#pragma once

#include <cstdint>

namespace ringhub::stress {

// Contract: used by one thread (the monitor).
class StallWatch {
 public:
  explicit StallWatch(std::int64_t timeout_ns) : timeout_ns_(timeout_ns) {}

  // Restarts the clock (nothing to wait for yet, e.g. before every engine planned).
  void restart(std::int64_t now) { quiet_since_ = now; }
  // Notes the progress counter; true when it has not moved for the timeout.
  bool quiet(std::int64_t now, std::uint64_t progress) {
    if (progress != last_progress_) {
      last_progress_ = progress;
      quiet_since_ = now;
    }
    return now - quiet_since_ > timeout_ns_;
  }
  // The kernel holds bytes for the clients still: not a stall; look again after another timeout.
  void still_in_flight(std::int64_t now) { quiet_since_ = now; }

 private:
  std::int64_t timeout_ns_;
  std::int64_t quiet_since_ = 0;
  std::uint64_t last_progress_ = 0;
};

}  // namespace ringhub::stress
