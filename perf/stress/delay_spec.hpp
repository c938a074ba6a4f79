// DelaySpec: the --ok-delay distribution. `0`, `10ms`, a uniform range `100ms-1000ms`, or a weighted mix
// `0:50%,10ms:30%,100ms-1000ms:20%`. Units ns, us, ms (the default for a bare number) and s.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace ringhub::stress {

class DelaySpec {
 public:
  static Result<DelaySpec> parse(const std::string& text);

  // A delay in nanoseconds drawn from the distribution.
  std::int64_t sample(std::mt19937_64& rng) const;
  const std::string& text() const { return text_; }

 private:
  struct Choice {
    std::int64_t low_ns = 0;
    std::int64_t high_ns = 0;  // inclusive; equal to low_ns for a fixed delay
    double cumulative = 0;     // weights summed up to and including this choice, out of 1
  };
  std::vector<Choice> choices_;
  std::int64_t max_ns_ = 0;
  std::string text_;
};

// "250ms", "2s", "15us", "0", "40" (ms) -> nanoseconds.
Result<std::int64_t> parse_duration_ns(const std::string& text);

}  // namespace ringhub::stress
