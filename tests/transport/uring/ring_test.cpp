// Tests for transport/uring/ring's timeout helpers on a real io_uring (skipped where io_uring is
// refused): update_timeout moves a pending timeout, remove_timeout ends it, and the helpers' own
// completions are kUnwatched.
#include "transport/uring/ring.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>

#include "transport/uring/tag.hpp"

namespace ringhub::uring {
namespace {

constexpr unsigned kSqEntries = 8;
constexpr unsigned kCqEntries = 16;
constexpr unsigned kTableSize = 4;
constexpr std::uint64_t kTimer = 8;  // the timeout's user_data (any value but kUnwatched)
constexpr std::chrono::seconds kPatience{5};

class UringRingTimeout : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Result<void> ready = ring_.init(kSqEntries, kCqEntries, kTableSize); !ready) {
      GTEST_SKIP() << ready.error().message;
    }
  }

  // A timeout far longer than the test's patience: only the helper under test can end it in time.
  void arm_long_timeout() {
    io_uring_sqe* entry = ring_.next_sqe();
    io_uring_prep_timeout(entry, &long_, 0, 0);
    io_uring_sqe_set_data64(entry, kTimer);
  }

  // Submits, then collects completions by user_data until `count` have come or kPatience has passed.
  std::map<std::uint64_t, int> complete(unsigned count) {
    std::map<std::uint64_t, int> seen;
    const auto give_up = std::chrono::steady_clock::now() + kPatience;
    while (seen.size() < count && std::chrono::steady_clock::now() < give_up) {
      __kernel_timespec wait{.tv_sec = 0, .tv_nsec = 100'000'000};
      const int ret = ring_.submit_and_wait(&wait);
      EXPECT_FALSE(enter_failed(ret)) << std::strerror(-ret);
      ring_.reap([&seen](const io_uring_cqe& cqe) { seen.emplace(cqe.user_data, cqe.res); });
    }
    EXPECT_EQ(seen.size(), count);
    return seen;
  }

  Ring ring_;
  __kernel_timespec long_{.tv_sec = 600, .tv_nsec = 0};
  __kernel_timespec short_{.tv_sec = 0, .tv_nsec = 1'000'000};
};

TEST_F(UringRingTimeout, UpdateTimeoutMakesALongTimeoutFireSoon) {
  arm_long_timeout();
  ring_.update_timeout(kTimer, &short_);
  const std::map<std::uint64_t, int> seen = complete(2);
  ASSERT_EQ(seen.count(kTimer), 1U);
  EXPECT_EQ(seen.at(kTimer), -ETIME);  // fired, not cancelled
  ASSERT_EQ(seen.count(kUnwatched), 1U);
  EXPECT_EQ(seen.at(kUnwatched), 0);
}

TEST_F(UringRingTimeout, RemoveTimeoutCancelsIt) {
  arm_long_timeout();
  ring_.remove_timeout(kTimer);
  const std::map<std::uint64_t, int> seen = complete(2);
  ASSERT_EQ(seen.count(kTimer), 1U);
  EXPECT_EQ(seen.at(kTimer), -ECANCELED);
  ASSERT_EQ(seen.count(kUnwatched), 1U);
  EXPECT_EQ(seen.at(kUnwatched), 0);
}

}  // namespace
}  // namespace ringhub::uring
