// A fixed SipHash key for tests: the hub draws a random one at start-up; tests need the same hashes on
// every run, so a test that passes once passes always.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/keyed_hash.hpp"

namespace ringhub {

inline HashKey test_hash_key() {
  HashKey key;
  for (std::size_t i = 0; i < key.bytes.size(); ++i) {
    key.bytes[i] = static_cast<std::uint8_t>(i * 17 + 3);  // any fixed bytes will do
  }
  return key;
}

inline const KeyedHash& test_hash() {
  static const KeyedHash hash(test_hash_key());
  return hash;
}

// `count` distinct X values whose std::hash (libstdc++: murmur with a fixed seed, what the hub used
// before KeyedHash) is 0 modulo `modulus`: what a client can build offline to put every X in one bucket
// of a table with `modulus` buckets, or on one of `modulus` shards. Brute force: about modulus * count
// hashes.
inline std::vector<std::string> std_hash_collisions(std::size_t count, std::size_t modulus) {
  std::vector<std::string> xs;
  xs.reserve(count);
  for (std::size_t i = 0; xs.size() < count; ++i) {
    std::string x = "x";  // appended, not "x" + ...: g++ 12 misreads that as an overlapping memcpy
    x += std::to_string(i);
    if (std::hash<std::string_view>{}(x) % modulus == 0) {
      xs.push_back(std::move(x));
    }
  }
  return xs;
}

}  // namespace ringhub
