// KeyedHash: SipHash-2-4 (libsodium's crypto_shorthash) under a secret key, for every hash of bytes a
// client chooses (the line protocol's X). With a fixed public hash a client can pick X values that all
// land in one bucket or on one shard; with a key it does not know it cannot.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringhub {

// SipHash's key: 16 bytes (crypto_shorthash_KEYBYTES). The hub draws one at start-up
// (transport/hash_key.hpp); tests pass a fixed one.
struct HashKey {
  static constexpr std::size_t kBytes = 16;
  std::array<std::uint8_t, kBytes> bytes{};
};

// Contract: immutable after construction, so any thread may hash with a shared instance. Pure
// computation: SipHash needs no library state (no sodium_init) and makes no system call.
class KeyedHash {
 public:
  explicit KeyedHash(const HashKey& key) : key_(key) {}

  std::uint64_t operator()(std::string_view bytes) const noexcept;

  // Which of `count` shards owns a value of this hash, from the high 32 bits (multiply-shift, no
  // division). Hash tables reduce the full hash modulo a prime bucket count, so the shard choice and
  // the bucket inside the owning shard's table stay independent.
  static unsigned shard_of(std::uint64_t hash, unsigned count) noexcept {
    return static_cast<unsigned>(((hash >> 32) * count) >> 32);
  }

 private:
  HashKey key_;
};

}  // namespace ringhub
