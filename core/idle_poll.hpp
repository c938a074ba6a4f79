// IdlePoll: the --idle-poll-us rule a hub thread follows before it sleeps. After work it keeps looking
// for more for up to the poll, but only while its sleeps stay shorter than the poll (work comes often
// enough that polling catches it); a quiet hub sleeps at once. Off (0), it never reads the clock.
#pragma once

#include <chrono>

namespace ringhub {

// Clock: a steady clock (std::chrono::steady_clock on the hub; a fake one in tests).
template <class Clock = std::chrono::steady_clock>
class IdlePoll {
 public:
  explicit IdlePoll(std::chrono::microseconds poll) : poll_(poll), pays_(poll.count() != 0) {}

  // A round handled work now (only read while polling pays: should_poll looks at nothing else then).
  void worked() {
    if (pays_) {
      last_work_ = Clock::now();
    }
  }
  // Whether to keep looking for work instead of sleeping: polling pays, and the last work was less
  // than the poll ago.
  bool should_poll() const { return pays_ && Clock::now() - last_work_ < poll_; }
  // Brackets each sleep: a sleep as long as the poll or longer stops polling until a shorter one.
  void sleeping() {
    if (enabled()) {
      slept_from_ = Clock::now();
    }
  }
  void woke() {
    if (enabled()) {
      pays_ = Clock::now() - slept_from_ < poll_;
    }
  }

 private:
  bool enabled() const { return poll_.count() != 0; }

  const std::chrono::microseconds poll_;
  bool pays_;  // the last sleep was shorter than the poll (before the first: whether the poll is on)
  typename Clock::time_point last_work_{};
  typename Clock::time_point slept_from_{};
};

}  // namespace ringhub
