// Tests for transport/uring/ring's timeout helpers on a real io_uring (skipped where io_uring is
// refused): update_timeout moves a pending timeout, remove_timeout ends it, and the helpers' own
// completions are kUnwatched.
#include "transport/uring/ring.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>

#include "tests/transport/uring/completions.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub::uring {
namespace {

constexpr unsigned kSqEntries = 8;
constexpr unsigned kCqEntries = 16;
constexpr unsigned kTableSize = 4;
constexpr std::uint64_t kTimer = 8;  // the timeout's user_data (any value but kUnwatched)

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

  Ring ring_;
  __kernel_timespec long_{.tv_sec = 600, .tv_nsec = 0};
  __kernel_timespec short_{.tv_sec = 0, .tv_nsec = 1'000'000};
};

TEST_F(UringRingTimeout, UpdateTimeoutMakesALongTimeoutFireSoon) {
  arm_long_timeout();
  ring_.update_timeout(kTimer, &short_);
  const testing::Completions seen = testing::complete(ring_, 2);
  EXPECT_EQ(testing::result_of(seen, kTimer), -ETIME);  // fired, not cancelled
  EXPECT_EQ(testing::result_of(seen, kUnwatched), 0);
}

TEST_F(UringRingTimeout, RemoveTimeoutCancelsIt) {
  arm_long_timeout();
  ring_.remove_timeout(kTimer);
  const testing::Completions seen = testing::complete(ring_, 2);
  EXPECT_EQ(testing::result_of(seen, kTimer), -ECANCELED);
  EXPECT_EQ(testing::result_of(seen, kUnwatched), 0);
}

}  // namespace
}  // namespace ringhub::uring
