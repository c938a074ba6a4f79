// MemoryAccount and MemoryBudget: every byte the hub holds for clients is charged to the account of
// the shard that allocated it, and the sum over shards is held against one budget (--max-memory).
// The budget's watermarks decide whose input the hub stops reading (docs/design.md, "Memory model").
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ringhub {

// glibc's malloc hands out chunks in multiples of this.
inline constexpr std::size_t kMallocGranule = 16;

// `bytes` rounded up to a multiple of kMallocGranule.
constexpr std::size_t malloc_granules(std::size_t bytes) {
  return (bytes + kMallocGranule - 1) & ~(kMallocGranule - 1);
}

// Bytes malloc really hands out for a request of `bytes`: an 8-byte chunk header, rounded up to a
// granule (glibc). Charging this, not the payload, keeps tiny replies from hiding 3x their size.
constexpr std::size_t malloc_footprint(std::size_t bytes) {
  return malloc_granules(bytes + 8);
}

// Contract: written by one shard thread; read (bytes_published) by any thread. A block charged on one
// shard may be released on another (a line message freed by its receiver): only the sum over shards
// is meaningful, so the count is signed.
class alignas(64) MemoryAccount {
 public:
  void charge(std::size_t bytes) { publish(bytes_ + static_cast<std::int64_t>(bytes)); }
  void release(std::size_t bytes) { publish(bytes_ - static_cast<std::int64_t>(bytes)); }
  // Brings the charge an object carries with it (`charged`, e.g. a message that grows on another
  // shard) up to `now` bytes.
  void recharge(std::size_t& charged, std::size_t now) {
    if (now > charged) {
      charge(now - charged);
    } else {
      release(charged - now);
    }
    charged = now;
  }
  std::int64_t bytes() const { return bytes_; }
  std::int64_t bytes_published() const { return published_.load(std::memory_order_relaxed); }

 private:
  void publish(std::int64_t bytes) {
    bytes_ = bytes;
    published_.store(bytes, std::memory_order_relaxed);
  }
  std::int64_t bytes_ = 0;
  std::atomic<std::int64_t> published_{0};
};

// Which connections the hub may read from at a given level of memory in use.
enum class ReadGate : std::uint8_t {
  kOpen,       // below the high watermark: everyone
  kLightOnly,  // in the reserve: only connections that are not sending large frames
  kClosed,     // at the budget: nobody (what is already read is still stored: never dropped)
};

// Whether a connection is sending large frames (ReadGate::kLightOnly pauses those first).
enum class Weight : std::uint8_t { kLight, kHeavy };

// The budget and its watermarks. Pure arithmetic: the shards feed it the hub-wide sum.
class MemoryBudget {
 public:
  // Share of the budget kept for light traffic (IDENTITY, LIST, small relays) once large senders are
  // paused: 1/4. It also absorbs what heavy senders had already sent when they were paused (bytes in
  // flight in receive buffers are stored, never dropped), so fresh clients are served meanwhile.
  static constexpr std::size_t kReserveDivisor = 4;
  // Heavy senders resume below 5/8 of the budget, light ones below the high watermark: gaps wide
  // enough that a hub at a watermark does not pause and resume the same senders every iteration.
  static constexpr std::size_t kResumeNumerator = 5;
  static constexpr std::size_t kResumeDenominator = 8;
  // Below 1/16 of the budget a connection may read far ahead of what the hub has parsed (cheap: one
  // multishot recv serves many frames); from 1/8 up only a little (see
  // MemoryGate::read_ahead_limit). The gap keeps a hub near the line from switching, and re-arming
  // every connection, on each loop iteration.
  static constexpr std::size_t kWideReadAheadBelowDivisor = 16;
  static constexpr std::size_t kNarrowReadAheadFromDivisor = 8;
  // From half the budget (until below 3/8) the `message X` a line connection sends past its pending
  // allowance (--max-line-pending-bytes) are held back: read and kept as a few bytes each, not taken
  // in, so the connection is still read and the oks it queued behind them arrive. Below half the budget
  // a client that pipelines past its allowance costs nothing the budget cannot hold. From the high
  // watermark a connection holding messages back is not read, as a heavy sender (until below 5/8):
  // stopping it earlier stalled clients whose oks wait behind their own messages (5/8 stalled four
  // clients of 8,000 messages each on an 8 MiB budget, their allowances and the messages they sent
  // themselves being past it).
  static constexpr std::size_t kLineHoldBackDivisor = 2;
  static constexpr std::size_t kLineReleaseNumerator = 3;  // of kResumeDenominator (8ths)

  explicit MemoryBudget(std::size_t limit)
      : limit_(limit),
        high_(limit - limit / kReserveDivisor),
        low_(limit / kResumeDenominator * kResumeNumerator),
        wide_below_(limit / kWideReadAheadBelowDivisor),
        narrow_from_(limit / kNarrowReadAheadFromDivisor),
        line_hold_back_from_(limit / kLineHoldBackDivisor),
        line_release_below_(limit / kResumeDenominator * kLineReleaseNumerator) {}

  std::size_t limit() const { return limit_; }
  std::size_t high_watermark() const { return high_; }
  std::size_t low_watermark() const { return low_; }

  ReadGate gate(std::int64_t in_use) const {
    if (in_use >= static_cast<std::int64_t>(limit_)) {
      return ReadGate::kClosed;
    }
    return in_use >= static_cast<std::int64_t>(high_) ? ReadGate::kLightOnly : ReadGate::kOpen;
  }
  // Whether a paused connection of `weight` may be read again.
  bool may_resume(std::int64_t in_use, Weight weight) const {
    return in_use < static_cast<std::int64_t>(weight == Weight::kHeavy ? low_ : high_);
  }
  // Whether connections may read far ahead now, given whether they could until now (hysteresis).
  bool allows_wide_read_ahead(std::int64_t in_use, bool until_now) const {
    return in_use < static_cast<std::int64_t>(until_now ? narrow_from_ : wide_below_);
  }
  // Whether line messages past a connection's allowance are held back now, given whether they were
  // until now (hysteresis).
  bool holds_back_lines(std::int64_t in_use, bool until_now) const {
    return in_use >= static_cast<std::int64_t>(until_now ? line_release_below_ : line_hold_back_from_);
  }
  // Whether a line connection holding messages back is not read now (hysteresis: a heavy sender's).
  bool throttles_held_lines(std::int64_t in_use, bool until_now) const {
    return in_use >= static_cast<std::int64_t>(until_now ? low_ : high_);
  }

 private:
  std::size_t limit_;
  std::size_t high_;
  std::size_t low_;
  std::size_t wide_below_;
  std::size_t narrow_from_;
  std::size_t line_hold_back_from_;
  std::size_t line_release_below_;
};

}  // namespace ringhub
