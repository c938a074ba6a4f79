// How a completion finds its owner, for every ring in ringhub (hub shards and client loops): an SQE's
// user_data is the owner's address with the operation kind in its low four bits, or, for owners that
// are not objects, a small number shifted past those bits. Each ring's user keeps its own kind enum.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace ringhub::uring {

// Bits of user_data that hold the kind: owners must be aligned to 1 << kTagKindBits bytes (alignas(16),
// or heap objects: malloc and new align to 16 on the platforms ringhub runs on).
inline constexpr unsigned kTagKindBits = 4;
inline constexpr std::uint64_t kTagKindMask = (std::uint64_t{1} << kTagKindBits) - 1;
inline constexpr std::size_t kTagAlignment = std::size_t{1} << kTagKindBits;

// user_data of requests whose completion needs nothing (cancels, link timeouts): no owner, and kind 0,
// which every ring user's kind enum keeps for "ignore" (checked with is_unwatched_kind).
inline constexpr std::uint64_t kUnwatched = 0;

template <typename Kind>
constexpr bool is_unwatched_kind(Kind kind) {
  return static_cast<std::uint64_t>(kind) == kUnwatched;
}

// A kind enum fits when all its values fit in the low bits; callers check with static_assert.
template <typename Kind>
constexpr bool kind_fits(Kind last) {
  return static_cast<std::uint64_t>(last) <= kTagKindMask;
}

template <typename Kind>
std::uint64_t tag(const void* owner, Kind kind) {
  static_assert(std::is_enum_v<Kind>);
  const auto address = reinterpret_cast<std::uint64_t>(owner);
  assert((address & kTagKindMask) == 0 && "a tagged owner must leave the kind bits free");
  return address | static_cast<std::uint64_t>(kind);
}

// For owners that are a number (a shard index, a slot), not an object.
template <typename Kind>
std::uint64_t tag_number(std::uint64_t number, Kind kind) {
  static_assert(std::is_enum_v<Kind>);
  return (number << kTagKindBits) | static_cast<std::uint64_t>(kind);
}

template <typename Kind>
Kind tag_kind(std::uint64_t user_data) {
  return static_cast<Kind>(user_data & kTagKindMask);
}

template <typename T>
T* tag_owner(std::uint64_t user_data) {
  // The kernel hands our pointer back as an integer; turning it back is the point of user_data.
  return reinterpret_cast<T*>(user_data & ~kTagKindMask);  // NOLINT(performance-no-int-to-ptr)
}

inline std::uint64_t tag_number_of(std::uint64_t user_data) {
  return user_data >> kTagKindBits;
}

}  // namespace ringhub::uring
