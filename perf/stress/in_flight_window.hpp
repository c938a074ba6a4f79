// InFlightWindow: the delivery bytes a relay run has started and not yet received, shared by the engine
// threads, and its bound. On one host both ends' socket buffers count against the kernel's TCP memory;
// past its pressure level with 200k sockets the kernel drops segments and the run then waits on TCP's
// loss recovery (docs/stress.md), so senders start a RELAY only while its deliveries fit.
#pragma once

#include <atomic>
#include <cstdint>

namespace ringhub::stress {

// Contract: any thread; reservations and releases are relaxed atomics (a count, not a handoff).
class InFlightWindow {
 public:
  explicit InFlightWindow(std::uint64_t limit = 0) : limit_(limit) {}  // 0: no limit
  void set_limit(std::uint64_t limit) { limit_ = limit; }              // before the threads start

  // Takes `bytes` if they fit, or if nothing is in flight (a relay larger than the window still goes,
  // alone); false otherwise.
  bool try_reserve(std::uint64_t bytes) {
    std::uint64_t held = held_.load(std::memory_order_relaxed);
    do {
      if (limit_ != 0 && held != 0 && held + bytes > limit_) {
        return false;
      }
    } while (!held_.compare_exchange_weak(held, held + bytes, std::memory_order_relaxed));
    return true;
  }
  void release(std::uint64_t bytes) { held_.fetch_sub(bytes, std::memory_order_relaxed); }
  std::uint64_t held() const { return held_.load(std::memory_order_relaxed); }

 private:
  std::uint64_t limit_;
  std::atomic<std::uint64_t> held_{0};
};

}  // namespace ringhub::stress
