// LatencyHistogram: bucket arithmetic and quantiles; see histogram.hpp.
#include "perf/stress/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace ringhub::stress {

// Values below 2 * kSub land in their own bucket; above, bucket = kSub * e + (v >> e) where e keeps
// v >> e within [kSub, 2 * kSub).
unsigned LatencyHistogram::bucket_of(std::uint64_t value) {
  const int width = std::bit_width(value);
  const unsigned exponent = width > static_cast<int>(kSubBits) + 1 ? width - kSubBits - 1 : 0;
  const unsigned bucket = kSub * exponent + static_cast<unsigned>(value >> exponent);
  return std::min(bucket, kBuckets - 1);
}

std::uint64_t LatencyHistogram::bucket_low(unsigned bucket) {
  if (bucket < 2 * kSub) {
    return bucket;
  }
  const unsigned exponent = bucket / kSub - 1;
  return std::uint64_t{bucket % kSub + kSub} << exponent;
}

std::uint64_t LatencyHistogram::bucket_width(unsigned bucket) {
  return bucket < 2 * kSub ? 1 : std::uint64_t{1} << (bucket / kSub - 1);
}

void LatencyHistogram::record(std::int64_t nanos) {
  nanos = std::max<std::int64_t>(nanos, 0);
  ++counts_[bucket_of(static_cast<std::uint64_t>(nanos))];
  ++count_;
  sum_ += nanos;
  max_ = std::max(max_, nanos);
  min_ = std::min(min_, nanos);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (unsigned i = 0; i < kBuckets; ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

std::int64_t LatencyHistogram::quantile(double q) const {
  if (count_ == 0) {
    return 0;
  }
  const auto rank = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (unsigned i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const std::uint64_t mid = bucket_low(i) + bucket_width(i) / 2;
      return std::min(static_cast<std::int64_t>(mid), max_);
    }
  }
  return max_;
}

}  // namespace ringhub::stress
