// LatencyHistogram: a log-linear histogram of nanosecond latencies (64 linear sub-buckets per power of
// two, so any percentile is within 1.6% of the truth) that costs one array increment per sample and
// merges across threads by addition.
#pragma once

#include <array>
#include <cstdint>

namespace ringhub::stress {

// Contract: one owner thread records; merge() into another after that thread has finished.
class LatencyHistogram {
 public:
  void record(std::int64_t nanos);
  void merge(const LatencyHistogram& other);

  std::uint64_t count() const { return count_; }
  std::int64_t max() const { return max_; }
  std::int64_t min() const { return count_ == 0 ? 0 : min_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }
  // The value at quantile q in [0, 1]: the midpoint of the bucket holding it, never above max().
  std::int64_t quantile(double q) const;

 private:
  static constexpr unsigned kSubBits = 6;  // 64 sub-buckets per octave: 1/64 relative bucket width
  static constexpr unsigned kSub = 1U << kSubBits;
  static constexpr unsigned kMaxExponent = 42;  // values up to 2^48 ns (3 days): far past any deadline
  static constexpr unsigned kBuckets = kSub * (kMaxExponent + 2);

  static unsigned bucket_of(std::uint64_t value);
  static std::uint64_t bucket_low(unsigned bucket);
  static std::uint64_t bucket_width(unsigned bucket);

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::int64_t sum_ = 0;
  std::int64_t max_ = 0;
  std::int64_t min_ = INT64_MAX;
};

}  // namespace ringhub::stress
