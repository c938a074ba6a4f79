// The first bytes of every ringhub-perf message: which publisher sent it, its sequence number and when it
// was meant to leave, so each receiver can check order, loss and duplicates and measure latency. The rest
// of the message is filler, optionally covered by a checksum (--checksum).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

#include "perf/stress/payload.hpp"

namespace ringhub::perf {

inline constexpr std::size_t kStampSize = 32;
inline constexpr std::uint32_t kStampMagic = 0x46504852;  // "RHPF" little-endian
// The stress harness's FNV-1a, so both harnesses checksum bodies the same way.
using stress::payload::fnv1a;
using stress::payload::kFnvBasis;

// Messages shorter than kStampSize carry no stamp: they are checked by count and size only.
struct Stamp {
  std::uint32_t magic = kStampMagic;
  std::uint32_t publisher = 0;
  std::uint64_t seq = 0;       // from 0, +1 per message of this publisher
  std::int64_t sent_ns = 0;    // CLOCK_MONOTONIC: when the message was due to leave
  std::uint64_t checksum = 0;  // FNV-1a of the bytes after the stamp; 0 when not asked for
};

inline void store_stamp(std::uint8_t* out, const Stamp& s) {
  std::memcpy(out, &s.magic, 4);
  std::memcpy(out + 4, &s.publisher, 4);
  std::memcpy(out + 8, &s.seq, 8);
  std::memcpy(out + 16, &s.sent_ns, 8);
  std::memcpy(out + 24, &s.checksum, 8);
}

inline Stamp load_stamp(const std::uint8_t* in) {
  Stamp s;
  std::memcpy(&s.magic, in, 4);
  std::memcpy(&s.publisher, in + 4, 4);
  std::memcpy(&s.seq, in + 8, 8);
  std::memcpy(&s.sent_ns, in + 16, 8);
  std::memcpy(&s.checksum, in + 24, 8);
  return s;
}

// Filler byte i of message `seq`: varies with both, so a message spliced from two others fails the sum.
inline std::uint8_t filler_byte(std::uint64_t seq, std::size_t i) {
  return static_cast<std::uint8_t>((seq * 131) + (i * 7) + (i >> 8));
}

}  // namespace ringhub::perf
