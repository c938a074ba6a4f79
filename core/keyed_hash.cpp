// KeyedHash: SipHash-2-4 through libsodium; see core/keyed_hash.hpp.
#include "core/keyed_hash.hpp"

#include <sodium.h>

#include <cstring>

namespace ringhub {

static_assert(HashKey::kBytes == crypto_shorthash_KEYBYTES, "HashKey must hold one SipHash key");
static_assert(crypto_shorthash_BYTES == sizeof(std::uint64_t), "SipHash-2-4 gives 64 bits");

std::uint64_t KeyedHash::operator()(std::string_view bytes) const noexcept {
  std::array<unsigned char, crypto_shorthash_BYTES> out{};
  // Cannot fail: crypto_shorthash always returns 0.
  crypto_shorthash(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                   key_.bytes.data());
  std::uint64_t hash = 0;
  std::memcpy(&hash, out.data(), sizeof hash);  // byte order does not matter for a hash
  return hash;
}

}  // namespace ringhub
