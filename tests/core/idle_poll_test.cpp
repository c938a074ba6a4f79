// Tests for core/idle_poll.hpp: a hub thread polls after work only within the poll of its last work,
// stops polling after a sleep as long as the poll, starts again after a shorter one, and with the poll
// off never polls (nor reads the clock).
#include "core/idle_poll.hpp"

#include <gtest/gtest.h>

#include <chrono>

namespace ringhub {
namespace {

using namespace std::chrono_literals;

// A clock the test moves by hand, counting its reads.
struct FakeClock {
  using duration = std::chrono::microseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<FakeClock>;
  static inline time_point current{1000s};
  static inline int reads = 0;
  static time_point now() {
    ++reads;
    return current;
  }
};

class IdlePollTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FakeClock::current = FakeClock::time_point{1000s};
    FakeClock::reads = 0;
  }
  static void advance(std::chrono::microseconds by) { FakeClock::current += by; }
};

TEST_F(IdlePollTest, PollsOnlyWithinThePollOfTheLastWork) {
  IdlePoll<FakeClock> idle(100us);
  EXPECT_FALSE(idle.should_poll()) << "no work yet";
  idle.worked();
  advance(99us);
  EXPECT_TRUE(idle.should_poll());
  advance(1us);
  EXPECT_FALSE(idle.should_poll()) << "the poll has run out";
  idle.worked();
  EXPECT_TRUE(idle.should_poll()) << "new work starts a new poll";
}

TEST_F(IdlePollTest, ALongSleepStopsPollingUntilAShortOne) {
  IdlePoll<FakeClock> idle(100us);
  idle.sleeping();
  advance(100us);
  idle.woke();
  idle.worked();
  EXPECT_FALSE(idle.should_poll()) << "work comes further apart than the poll: sleep at once";
  idle.sleeping();
  advance(40us);
  idle.woke();
  idle.worked();
  EXPECT_TRUE(idle.should_poll()) << "work comes within the poll again";
}

TEST_F(IdlePollTest, OffNeverPollsNorReadsTheClock) {
  IdlePoll<FakeClock> idle(0us);
  idle.worked();
  idle.sleeping();
  idle.woke();
  EXPECT_FALSE(idle.should_poll());
  EXPECT_EQ(FakeClock::reads, 0);
}

}  // namespace
}  // namespace ringhub
