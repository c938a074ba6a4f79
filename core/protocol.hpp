// The relay protocol's wire format: the one source of truth for frame types, header layout,
// error codes and limits. docs/protocol.md mirrors this file byte by byte; change both together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringhub::protocol {

// Every frame starts with this header: u8 type | u8 count | u16 flags | u32 length, little-endian.
inline constexpr std::size_t kHeaderSize = 8;

// A user id on the wire: u64, little-endian. Ids start at 1 and are never reused by one hub process.
inline constexpr std::size_t kIdSize = 8;
using UserId = std::uint64_t;

// A RELAY names between 1 and 255 receivers: the count field is one byte.
inline constexpr std::size_t kMaxReceivers = 255;

// Largest RELAY body (1 MiB). Bounds the memory one frame can make the hub hold.
inline constexpr std::size_t kMaxBodySize = 1U << 20;

// Largest length field any client frame may carry: a RELAY to 255 receivers with a full body.
inline constexpr std::size_t kMaxClientFrameLength = kMaxReceivers * kIdSize + kMaxBodySize;

// A DELIVER header: the frame header plus the sender id. It is 16 bytes, and a RELAY frame has at
// least 8 + 8n >= 16 bytes before its body, so the hub rewrites it in place over the receiver list.
inline constexpr std::size_t kDeliverPrefixSize = kHeaderSize + kIdSize;

// An ERROR reason is short human text; the hub never sends more than this many reason bytes.
inline constexpr std::size_t kMaxErrorReasonSize = 200;

enum class FrameType : std::uint8_t {
  kIdentity = 0x01,
  kList = 0x02,
  kRelay = 0x03,
  kIdentityReply = 0x81,
  kListReply = 0x82,
  kDeliver = 0x83,
  kError = 0xFF,
};

// ERROR frame codes. The hub closes the connection right after sending any of them.
enum class ErrorCode : std::uint8_t {
  kUnknownType = 1,         // type byte is not a client frame type
  kBadReceiverCount = 2,    // RELAY with count 0, or IDENTITY/LIST with count != 0
  kFrameTooLarge = 3,       // length exceeds kMaxClientFrameLength (or the body kMaxBodySize)
  kLengthInconsistent = 4,  // length does not match the type (IDENTITY/LIST != 0, RELAY < 8n)
  kNonzeroFlags = 5,        // the flags field is reserved and must be 0
  kSlowConsumer = 6,        // the connection's outbound queue passed its limit
  kServerFull = 7,          // the hub is at --max-connections
  kFrameTimeout = 8,        // a frame was started and not finished within --frame-timeout
};

struct FrameHeader {
  FrameType type{};
  std::uint8_t count = 0;
  std::uint16_t flags = 0;
  std::uint32_t length = 0;  // bytes after the header
};

std::string_view error_code_name(ErrorCode code);

}  // namespace ringhub::protocol
