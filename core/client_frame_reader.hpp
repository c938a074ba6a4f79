// ClientFrameReader: the client side of the relay protocol. Cuts the hub's byte stream, split however it
// arrived, into typed hub-to-client frames (IDENTITY_REPLY, LIST_REPLY, DELIVER, ERROR), checks each
// header against docs/protocol.md and the limits, and streams DELIVER bodies without copying them.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"

namespace ringhub {

// Largest LIST_REPLY length a client accepts by default (64 MiB: 8 Mi ids). The hub's reply grows with
// its connections, so the protocol sets no limit; this one stops a corrupt length from making a client
// allocate 4 GiB.
inline constexpr std::size_t kDefaultMaxListReplyLength = std::size_t{64} << 20;

// What is wrong with a hub frame; the first failing check, in this order, gives the error.
enum class HubFrameError : std::uint8_t {
  kUnknownType = 1,  // type is not 0x81, 0x82, 0x83 or 0xFF (hub frames only)
  kNonzeroCount,     // count != 0: hub frames carry none
  kNonzeroFlags,     // flags != 0
  kBadLength,        // IDENTITY_REPLY length != 8, LIST_REPLY not a multiple of 8, DELIVER < 8, ERROR < 1
  kTooLarge,         // DELIVER body over 1 MiB, ERROR reason over 200 bytes, LIST_REPLY over the reader's cap
};

std::string_view hub_frame_error_name(HubFrameError error);

// Checks one hub frame header; nothing when it is well formed.
std::optional<HubFrameError> validate_hub_header(const protocol::FrameHeader& header,
                                                 std::size_t max_list_reply_length);

// What the reader reports. The spans and views are valid only during the call. A DELIVER is reported
// as begin, zero or more byte runs (views into the fed bytes whenever they lie there: zero copy), end.
template <typename H>
concept ClientFrameHandler = requires(H& h, protocol::UserId id, std::span<const protocol::UserId> ids,
                                      std::uint32_t size, std::span<const std::uint8_t> bytes,
                                      std::uint8_t code, std::string_view reason) {
  h.on_identity_reply(id);
  h.on_list_reply(ids);
  h.on_deliver_begin(id, size);  // sender, body size
  h.on_deliver_bytes(bytes);
  h.on_deliver_end();
  h.on_error(code, reason);  // the raw code byte: a newer hub may send codes this build does not know
};

// Contract: owned by one connection and fed its bytes in stream order, from one thread. After a malformed
// header it reports that error for every later feed and reads nothing more (the stream cannot be
// resynchronised). Memory held: one header, an ERROR (at most 201 bytes), and a LIST_REPLY being gathered.
class ClientFrameReader {
 public:
  explicit ClientFrameReader(std::size_t max_list_reply_length = kDefaultMaxListReplyLength)
      : max_list_reply_length_(max_list_reply_length) {}

  // Reports every frame (or part of a DELIVER) in `bytes`. Nothing when all bytes were consumed (a partial
  // frame may be held); the error when a malformed header stopped the reading.
  template <ClientFrameHandler Handler>
  std::optional<HubFrameError> feed(std::span<const std::uint8_t> bytes, Handler& handler);

  // True when no part of a frame is held (a clean frame boundary).
  bool at_boundary() const { return state_ == State::kHeader && header_have_ == 0; }
  std::optional<HubFrameError> error() const { return error_; }

 private:
  enum class State : std::uint8_t { kHeader, kFixed, kList, kDeliverBody };

  // Bytes gathered before a frame's handler runs: its header, then the IDENTITY_REPLY id, the DELIVER
  // sender, or the whole ERROR payload (code + reason).
  static constexpr std::size_t kMaxFixedPayload = 1 + protocol::kMaxErrorReasonSize;
  // A DELIVER header's first four bytes as one little-endian u32: type 0x83, count 0, flags 0.
  static constexpr std::uint32_t kDeliverTypeWord = static_cast<std::uint32_t>(protocol::FrameType::kDeliver);

  // The next `need` bytes: in place when none are gathered yet and all are in `bytes`, else gathered
  // into `into` (holding `have`); null while incomplete. Advances `bytes` past what it used.
  static const std::uint8_t* take(std::span<const std::uint8_t>& bytes, std::uint8_t* into, std::size_t& have,
                                  std::size_t need);
  // The fast path (most of a receiver's traffic): a well-formed DELIVER wholly inside `bytes` is reported
  // straight from them. False, consuming nothing, for anything else; the general path then reads it.
  template <ClientFrameHandler Handler>
  static bool take_whole_deliver(std::span<const std::uint8_t>& bytes, Handler& handler);
  // Starts the frame whose header is `raw`; the error if the header is malformed.
  std::optional<HubFrameError> start_frame(const std::uint8_t* raw);
  void gather_list(std::span<const std::uint8_t>& bytes);
  template <ClientFrameHandler Handler>
  void finish_fixed(const std::uint8_t* payload, Handler& handler);
  template <ClientFrameHandler Handler>
  void stream_body(std::span<const std::uint8_t>& bytes, Handler& handler);

  std::size_t max_list_reply_length_;
  State state_ = State::kHeader;
  std::optional<HubFrameError> error_;
  protocol::FrameHeader header_{};
  std::uint8_t header_bytes_[protocol::kHeaderSize] = {};
  std::size_t header_have_ = 0;
  std::uint8_t fixed_[kMaxFixedPayload] = {};
  std::size_t fixed_have_ = 0;
  std::size_t fixed_need_ = 0;
  std::vector<protocol::UserId> list_;  // the LIST_REPLY being gathered
  std::size_t list_have_ = 0;           // its bytes so far
  std::uint32_t body_left_ = 0;         // DELIVER body bytes still to come
};

template <ClientFrameHandler Handler>
std::optional<HubFrameError> ClientFrameReader::feed(std::span<const std::uint8_t> bytes, Handler& handler) {
  while (!error_ && !bytes.empty()) {
    switch (state_) {
      case State::kHeader:
        if (header_have_ == 0 && take_whole_deliver(bytes, handler)) {
          break;
        }
        if (const std::uint8_t* raw = take(bytes, header_bytes_, header_have_, protocol::kHeaderSize)) {
          error_ = start_frame(raw);
          if (!error_ && state_ == State::kList && header_.length == 0) {
            handler.on_list_reply({});  // "no other client": nothing to gather
            state_ = State::kHeader;
          }
        }
        break;
      case State::kFixed:
        if (const std::uint8_t* payload = take(bytes, fixed_, fixed_have_, fixed_need_)) {
          finish_fixed(payload, handler);
        }
        break;
      case State::kList:
        gather_list(bytes);
        if (list_have_ == header_.length) {
          handler.on_list_reply(list_);
          state_ = State::kHeader;
        }
        break;
      case State::kDeliverBody: stream_body(bytes, handler); break;
    }
  }
  return error_;
}

template <ClientFrameHandler Handler>
bool ClientFrameReader::take_whole_deliver(std::span<const std::uint8_t>& bytes, Handler& handler) {
  using protocol::kHeaderSize;
  if (bytes.size() < protocol::kDeliverPrefixSize || codec::load_u32(bytes.data()) != kDeliverTypeWord) {
    return false;
  }
  const std::uint32_t length = codec::load_u32(bytes.data() + 4);
  if (length < protocol::kIdSize || length - protocol::kIdSize > protocol::kMaxBodySize ||
      bytes.size() - kHeaderSize < length) {
    return false;
  }
  const std::uint32_t body = length - static_cast<std::uint32_t>(protocol::kIdSize);
  handler.on_deliver_begin(codec::load_u64(bytes.data() + kHeaderSize), body);
  if (body != 0) {
    handler.on_deliver_bytes(bytes.subspan(protocol::kDeliverPrefixSize, body));
  }
  handler.on_deliver_end();
  bytes = bytes.subspan(kHeaderSize + length);
  return true;
}

template <ClientFrameHandler Handler>
void ClientFrameReader::finish_fixed(const std::uint8_t* payload, Handler& handler) {
  state_ = State::kHeader;
  switch (header_.type) {
    case protocol::FrameType::kIdentityReply: handler.on_identity_reply(codec::load_u64(payload)); return;
    case protocol::FrameType::kError:
      handler.on_error(payload[0],
                       std::string_view(reinterpret_cast<const char*>(payload + 1), fixed_need_ - 1));
      return;
    default: break;  // DELIVER: the sender id
  }
  body_left_ = header_.length - static_cast<std::uint32_t>(protocol::kIdSize);
  handler.on_deliver_begin(codec::load_u64(payload), body_left_);
  if (body_left_ == 0) {
    handler.on_deliver_end();
  } else {
    state_ = State::kDeliverBody;
  }
}

template <ClientFrameHandler Handler>
void ClientFrameReader::stream_body(std::span<const std::uint8_t>& bytes, Handler& handler) {
  const std::size_t n = std::min<std::size_t>(body_left_, bytes.size());
  handler.on_deliver_bytes(bytes.first(n));
  bytes = bytes.subspan(n);
  body_left_ -= static_cast<std::uint32_t>(n);
  if (body_left_ == 0) {
    handler.on_deliver_end();
    state_ = State::kHeader;
  }
}

}  // namespace ringhub
