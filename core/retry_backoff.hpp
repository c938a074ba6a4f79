// RetryBackoff: the one reconnect backoff of every client-side path (the line client, the stress
// harness's line and relay modes): doubling from an initial wait up to a cap, with "equal jitter" so
// that clients cut off by one hub restart do not come back in step.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ringhub {

struct RetryBackoff {
  std::int64_t initial_ns = 50'000'000;
  std::int64_t max_ns = 2'000'000'000;

  // The wait before attempt `attempt` (>= 2): initial_ns * 2^(attempt-2), capped at max_ns, then a draw
  // between half and all of that (so the backoff still grows). `random` is any uniform 64-bit draw.
  std::int64_t before_attempt(unsigned attempt, std::uint64_t random) const {
    const std::int64_t max = std::max<std::int64_t>(max_ns, 0);
    std::int64_t full = std::clamp<std::int64_t>(initial_ns, 0, max);
    for (unsigned n = 2; n < attempt && full > 0 && full < max; ++n) {
      full = full > max / 2 ? max : full * 2;
    }
    const std::int64_t half = full / 2;
    const auto choices = static_cast<std::uint64_t>(full - half) + 1;
    return half + static_cast<std::int64_t>(random % choices);
  }
};

}  // namespace ringhub
