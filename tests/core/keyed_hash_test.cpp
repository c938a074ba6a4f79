// Tests for core/keyed_hash: it is SipHash-2-4 (the reference test vector), the key changes every
// hash, and X values built to land on one shard under the old std::hash spread over every shard.
#include "core/keyed_hash.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tests/core/test_hash_key.hpp"

namespace ringhub {
namespace {

TEST(KeyedHashTest, IsSipHash24) {
  // The SipHash paper's reference vectors use the key 00 01 .. 0f; the empty message hashes to
  // 31 0e 0e dd 47 db 6f 72, read here as a little-endian 64-bit word.
  HashKey key;
  for (std::size_t i = 0; i < key.bytes.size(); ++i) {
    key.bytes[i] = static_cast<std::uint8_t>(i);
  }
  EXPECT_EQ(KeyedHash(key)(""), 0x726fdb47dd0e0e31ULL);
  // And the 15-byte message 00 01 .. 0e: e5 45 be 49 61 ca 29 a1.
  std::string fifteen;
  for (char c = 0; c < 15; ++c) {
    fifteen.push_back(c);
  }
  EXPECT_EQ(KeyedHash(key)(fifteen), 0xa129ca6149be45e5ULL);
}

TEST(KeyedHashTest, TheKeyChangesTheHash) {
  HashKey other = test_hash_key();
  other.bytes[0] ^= 1;
  EXPECT_EQ(test_hash()("hello"), KeyedHash(test_hash_key())("hello"));
  EXPECT_NE(test_hash()("hello"), KeyedHash(other)("hello"));
  EXPECT_NE(test_hash()("hello"), test_hash()("hellp"));
}

TEST(KeyedHashTest, ShardOfStaysInRange) {
  for (const unsigned count : {1U, 2U, 3U, 6U, 254U}) {
    EXPECT_EQ(KeyedHash::shard_of(0, count), 0U);
    EXPECT_EQ(KeyedHash::shard_of(std::numeric_limits<std::uint64_t>::max(), count), count - 1);
  }
}

TEST(KeyedHashTest, XsAimedAtOneShardUnderStdHashSpreadOverEveryShard) {
  constexpr unsigned kShards = 4;
  constexpr std::size_t kXs = 4000;
  const std::vector<std::string> xs = std_hash_collisions(kXs, kShards);
  std::vector<std::size_t> per_shard(kShards, 0);
  for (const std::string& x : xs) {
    ASSERT_EQ(std::hash<std::string_view>{}(x) % kShards, 0U);  // the old owner_of: all on shard 0
    ++per_shard[KeyedHash::shard_of(test_hash()(x), kShards)];
  }
  // 1000 expected per shard, standard deviation about 27: 800..1200 is over 7 of them either side.
  for (const std::size_t n : per_shard) {
    EXPECT_GT(n, 800U);
    EXPECT_LT(n, 1200U);
  }
}

}  // namespace
}  // namespace ringhub
