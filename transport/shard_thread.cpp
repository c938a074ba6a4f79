// The loop of a hub thread that drives several shards: step each, and block on one eventfd that every
// one of their rings signals only when none had work. See transport/shard_thread.hpp.
#include "transport/shard_thread.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/idle_poll.hpp"
#include "transport/shard.hpp"

namespace ringhub {

namespace {

// poll()'s "no timeout".
constexpr int kWaitForever = -1;

[[noreturn]] void die(const char* what, int error) {
  spdlog::critical("hub thread: {}: {}", what, std::strerror(error));
  std::abort();  // an impossible internal state: the fds are ours and valid
}

// One eventfd that all of a thread's rings signal on each completion they post. The rings are
// TaskRun::kCooperative: their work runs at any syscall of the thread and wakes it from poll(); with
// DEFER_TASKRUN rings wake-ups were lost (docs/design.md). The thread clears the eventfd, steps every
// ring once more (so a completion posted between its last step and the clear is not missed), and only
// then blocks.
class WakeFd {
 public:
  WakeFd() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) {
      die("eventfd", errno);
    }
  }
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;
  ~WakeFd() { ::close(fd_); }

  void attach(Shard& shard) const {
    if (const int ret = shard.register_wake_eventfd(fd_); ret < 0) {
      die("io_uring_register_eventfd", -ret);
    }
  }
  void clear() const {
    std::uint64_t count = 0;
    if (::read(fd_, &count, sizeof count) < 0 && errno != EAGAIN) {
      die("read of the wake eventfd", errno);
    }
  }
  // Blocks until a ring signalled, or for at most `timeout_ms` (kWaitForever: no limit).
  void wait(int timeout_ms) const {
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
      die("poll on the wake eventfd", errno);
    }
  }

 private:
  int fd_;
};

// Steps every active shard once, retires the finished ones; returns the completions handled.
unsigned step_round(std::vector<Shard*>& active) {
  unsigned handled = 0;
  for (Shard* shard : active) {
    handled += shard->step();
  }
  std::erase_if(active, [](Shard* shard) {
    if (!shard->finished()) {
      return false;
    }
    shard->end_run();
    return true;
  });
  return handled;
}

// A shard that finished but waits for the others must look again every kFinishPoll.
int wait_timeout_ms(const std::vector<Shard*>& active) {
  for (const Shard* shard : active) {
    if (shard->waiting_for_others()) {
      return static_cast<int>(kFinishPoll.count());
    }
  }
  return kWaitForever;
}

}  // namespace

void drive_shards(std::span<Shard* const> shards) {
  if (shards.size() == 1) {
    shards.front()->run();
    return;
  }
  const WakeFd wake;
  std::vector<Shard*> active(shards.begin(), shards.end());
  for (Shard* shard : active) {
    wake.attach(*shard);
    shard->start();
  }
  // After a round with work, rounds go on (polling) while that pays (core/idle_poll.hpp says when).
  IdlePoll idle(shards.front()->idle_poll());
  while (!active.empty()) {
    if (step_round(active) != 0 || active.empty()) {
      idle.worked();
      continue;
    }
    if (idle.should_poll() && wait_timeout_ms(active) == kWaitForever) {
      continue;
    }
    wake.clear();
    if (step_round(active) == 0 && !active.empty()) {
      idle.sleeping();
      wake.wait(wait_timeout_ms(active));
      idle.woke();
    }
  }
}

}  // namespace ringhub
