// Test support for the engine's real-ring tests: submit, then gather completions by user_data until
// enough have come or a few seconds have passed, so a request nothing ends fails its test rather
// than hanging it.
#pragma once

#include <gtest/gtest.h>
#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>

#include "transport/uring/ring.hpp"

namespace ringhub::uring::testing {

inline constexpr std::chrono::seconds kPatience{5};

// What the tests read of a completion (io_uring_cqe ends in a flexible array: not copied).
struct Completion {
  int res = 0;
  std::uint32_t flags = 0;
};
using Completions = std::multimap<std::uint64_t, Completion>;

inline Completions complete(Ring& ring, unsigned count) {
  Completions seen;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (seen.size() < count && std::chrono::steady_clock::now() < give_up) {
    __kernel_timespec wait{.tv_sec = 0, .tv_nsec = 100'000'000};
    const int ret = ring.submit_and_wait(&wait);
    EXPECT_FALSE(enter_failed(ret)) << std::strerror(-ret);
    ring.reap([&seen](const io_uring_cqe& cqe) {
      seen.emplace(cqe.user_data, Completion{cqe.res, cqe.flags});
    });
  }
  EXPECT_EQ(seen.size(), count);
  return seen;
}

// The result of the one completion tagged `user_data` in `seen` (fails the test if there is not one).
inline int result_of(const Completions& seen, std::uint64_t user_data) {
  EXPECT_EQ(seen.count(user_data), 1U) << "completions tagged " << user_data;
  const auto found = seen.find(user_data);
  return found == seen.end() ? 0 : found->second.res;
}

}  // namespace ringhub::uring::testing
