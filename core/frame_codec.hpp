// Encodes and decodes relay-protocol frames (layout in core/protocol.hpp). Pure functions over byte
// spans: no allocation, no I/O. Validation of client frames maps each violation to its ERROR code.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/protocol.hpp"

namespace ringhub::codec {

using protocol::ErrorCode;
using protocol::FrameHeader;
using protocol::FrameType;
using protocol::UserId;

inline std::uint64_t load_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);  // the wire is little-endian, as is every target we build for
  return v;
}
inline std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store_u64(std::uint8_t* p, std::uint64_t v) {
  std::memcpy(p, &v, sizeof v);
}
inline void store_u32(std::uint8_t* p, std::uint32_t v) {
  std::memcpy(p, &v, sizeof v);
}

static_assert(std::endian::native == std::endian::little, "ringhub assumes a little-endian host");

// Reads the 8 header bytes; does not judge them.
FrameHeader decode_header(std::span<const std::uint8_t, protocol::kHeaderSize> bytes);
void encode_header(std::span<std::uint8_t, protocol::kHeaderSize> out, const FrameHeader& header);

// Checks a header received from a client. Returns the ERROR code it violates, or nothing if the
// frame is well formed. Checks run in a fixed order so one frame always gets the same code.
std::optional<ErrorCode> validate_client_header(const FrameHeader& header);

// A RELAY body starts after the receiver list.
inline std::size_t relay_body_offset(std::uint8_t receiver_count) {
  return protocol::kHeaderSize + protocol::kIdSize * receiver_count;
}

// Writes a DELIVER header and the sender id (16 bytes) ending exactly where the body starts.
void encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize> out, UserId sender,
                           std::uint32_t body_size);

// Whole reply frames, appended to `out`.
void append_identity_reply(std::vector<std::uint8_t>& out, UserId id);
void append_list_reply(std::vector<std::uint8_t>& out, std::span<const UserId> ids);
void append_error(std::vector<std::uint8_t>& out, ErrorCode code, std::string_view reason);

// Whole client frames, appended to `out` (used by the client library and tests).
void append_identity_request(std::vector<std::uint8_t>& out);
void append_list_request(std::vector<std::uint8_t>& out);
void append_relay(std::vector<std::uint8_t>& out, std::span<const UserId> receivers,
                  std::span<const std::uint8_t> body);

// Sizes of replies, so callers can allocate exactly once.
inline std::size_t identity_reply_size() {
  return protocol::kHeaderSize + protocol::kIdSize;
}
inline std::size_t list_reply_size(std::size_t count) {
  return protocol::kHeaderSize + protocol::kIdSize * count;
}

}  // namespace ringhub::codec
