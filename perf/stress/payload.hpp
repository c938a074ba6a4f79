// Relay bodies a receiver can check byte for byte without the sender's copy: a 24-byte header (magic,
// sender, sequence number, size, FNV-1a checksum) and then bytes that are a pure function of
// (seed, sender, sequence), so any chunk at any offset can be regenerated and compared.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

namespace ringhub::stress::payload {

inline constexpr std::uint32_t kMagic = 0x54534852;  // "RHST" little-endian
inline constexpr std::size_t kHeaderSize = 24;
inline constexpr std::uint64_t kFnvBasis = 0xcbf29ce484222325ULL;
inline constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

struct BodyHeader {
  std::uint32_t magic = kMagic;
  std::uint32_t sender = 0;    // the sender's client number
  std::uint32_t seq = 0;       // the sender's relay number, from 1, increasing
  std::uint32_t size = 0;      // whole body, header included
  std::uint64_t checksum = 0;  // FNV-1a of the bytes after the header
};

inline void encode(std::uint8_t* out, const BodyHeader& h) {
  std::memcpy(out, &h.magic, 4);
  std::memcpy(out + 4, &h.sender, 4);
  std::memcpy(out + 8, &h.seq, 4);
  std::memcpy(out + 12, &h.size, 4);
  std::memcpy(out + 16, &h.checksum, 8);
}

inline BodyHeader decode(const std::uint8_t* in) {
  BodyHeader h;
  std::memcpy(&h.magic, in, 4);
  std::memcpy(&h.sender, in + 4, 4);
  std::memcpy(&h.seq, in + 8, 4);
  std::memcpy(&h.size, in + 12, 4);
  std::memcpy(&h.checksum, in + 16, 8);
  return h;
}

inline std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

inline std::uint64_t key(std::uint64_t seed, std::uint32_t sender, std::uint32_t seq) {
  return mix(seed ^ mix((std::uint64_t{sender} << 32) | seq));
}

// The 8 payload bytes at positions [8k, 8k + 8), little-endian.
inline std::uint64_t word(std::uint64_t key, std::uint64_t k) {
  return mix(key + k * 0x9E3779B97F4A7C15ULL);
}

inline std::uint8_t byte_at(std::uint64_t key, std::uint64_t pos) {
  return static_cast<std::uint8_t>(word(key, pos / 8) >> (8 * (pos % 8)));
}

inline void fill(std::uint8_t* out, std::size_t n, std::uint64_t key) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t w = word(key, i / 8);
    std::memcpy(out + i, &w, 8);
  }
  for (; i < n; ++i) {
    out[i] = byte_at(key, i);
  }
}

// Whether `bytes` equal the payload at positions [pos, pos + size).
inline bool matches(std::span<const std::uint8_t> bytes, std::uint64_t pos, std::uint64_t key) {
  std::size_t i = 0;
  for (; i < bytes.size() && (pos + i) % 8 != 0; ++i) {
    if (bytes[i] != byte_at(key, pos + i)) {
      return false;
    }
  }
  for (; i + 8 <= bytes.size(); i += 8) {
    const std::uint64_t w = word(key, (pos + i) / 8);
    if (std::memcmp(bytes.data() + i, &w, 8) != 0) {
      return false;
    }
  }
  for (; i < bytes.size(); ++i) {
    if (bytes[i] != byte_at(key, pos + i)) {
      return false;
    }
  }
  return true;
}

inline std::uint64_t fnv1a(std::uint64_t hash, std::span<const std::uint8_t> bytes) {
  for (const std::uint8_t b : bytes) {
    hash = (hash ^ b) * kFnvPrime;
  }
  return hash;
}

}  // namespace ringhub::stress::payload
