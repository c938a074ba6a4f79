// Frame encoding and client-header validation; see core/frame_codec.hpp.
#include "core/frame_codec.hpp"

#include <algorithm>

namespace ringhub::codec {

using protocol::kHeaderSize;
using protocol::kIdSize;

FrameHeader decode_header(std::span<const std::uint8_t, kHeaderSize> bytes) {
  FrameHeader h;
  h.type = static_cast<FrameType>(bytes[0]);
  h.count = bytes[1];
  h.flags = static_cast<std::uint16_t>(bytes[2] | (bytes[3] << 8));
  h.length = load_u32(bytes.data() + 4);
  return h;
}

void encode_header(std::span<std::uint8_t, kHeaderSize> out, const FrameHeader& header) {
  out[0] = static_cast<std::uint8_t>(header.type);
  out[1] = header.count;
  out[2] = static_cast<std::uint8_t>(header.flags & 0xFF);
  out[3] = static_cast<std::uint8_t>(header.flags >> 8);
  store_u32(out.data() + 4, header.length);
}

std::optional<ErrorCode> validate_client_header(const FrameHeader& header) {
  const bool is_relay = header.type == FrameType::kRelay;
  if (!is_relay && header.type != FrameType::kIdentity && header.type != FrameType::kList) {
    return ErrorCode::kUnknownType;
  }
  if (header.flags != 0) {
    return ErrorCode::kNonzeroFlags;
  }
  if (!is_relay) {
    if (header.count != 0) {
      return ErrorCode::kBadReceiverCount;
    }
    if (header.length != 0) {
      return ErrorCode::kLengthInconsistent;
    }
    return std::nullopt;
  }
  if (header.count == 0) {
    return ErrorCode::kBadReceiverCount;
  }
  const std::size_t ids_size = kIdSize * header.count;
  if (header.length < ids_size) {
    return ErrorCode::kLengthInconsistent;
  }
  if (header.length - ids_size > protocol::kMaxBodySize) {
    return ErrorCode::kFrameTooLarge;
  }
  return std::nullopt;
}

void encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize> out, UserId sender,
                           std::uint32_t body_size) {
  const FrameHeader header{FrameType::kDeliver, 0, 0, static_cast<std::uint32_t>(kIdSize + body_size)};
  encode_header(out.first<kHeaderSize>(), header);
  store_u64(out.data() + kHeaderSize, sender);
}

namespace {

std::uint8_t* grow(std::vector<std::uint8_t>& out, std::size_t n) {
  const std::size_t old = out.size();
  out.resize(old + n);
  return out.data() + old;
}

void append_header(std::vector<std::uint8_t>& out, FrameType type, std::uint8_t count, std::size_t length) {
  const FrameHeader header{type, count, 0, static_cast<std::uint32_t>(length)};
  encode_header(std::span<std::uint8_t, kHeaderSize>(grow(out, kHeaderSize), kHeaderSize), header);
}

void append_ids(std::vector<std::uint8_t>& out, std::span<const UserId> ids) {
  std::uint8_t* p = grow(out, kIdSize * ids.size());
  for (const UserId id : ids) {
    store_u64(p, id);
    p += kIdSize;
  }
}

}  // namespace

void append_identity_reply(std::vector<std::uint8_t>& out, UserId id) {
  append_header(out, FrameType::kIdentityReply, 0, kIdSize);
  append_ids(out, std::span<const UserId>(&id, 1));
}

void append_list_reply(std::vector<std::uint8_t>& out, std::span<const UserId> ids) {
  append_header(out, FrameType::kListReply, 0, kIdSize * ids.size());
  append_ids(out, ids);
}

void append_error(std::vector<std::uint8_t>& out, ErrorCode code, std::string_view reason) {
  reason = reason.substr(0, std::min(reason.size(), protocol::kMaxErrorReasonSize));
  append_header(out, FrameType::kError, 0, 1 + reason.size());
  out.push_back(static_cast<std::uint8_t>(code));
  out.insert(out.end(), reason.begin(), reason.end());
}

void append_identity_request(std::vector<std::uint8_t>& out) {
  append_header(out, FrameType::kIdentity, 0, 0);
}

void append_list_request(std::vector<std::uint8_t>& out) {
  append_header(out, FrameType::kList, 0, 0);
}

void append_relay(std::vector<std::uint8_t>& out, std::span<const UserId> receivers,
                  std::span<const std::uint8_t> body) {
  append_header(out, FrameType::kRelay, static_cast<std::uint8_t>(receivers.size()),
                kIdSize * receivers.size() + body.size());
  append_ids(out, receivers);
  out.insert(out.end(), body.begin(), body.end());
}

}  // namespace ringhub::codec

namespace ringhub::protocol {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnknownType: return "unknown frame type";
    case ErrorCode::kBadReceiverCount: return "bad receiver count";
    case ErrorCode::kFrameTooLarge: return "frame too large";
    case ErrorCode::kLengthInconsistent: return "length inconsistent with count";
    case ErrorCode::kNonzeroFlags: return "nonzero flags";
    case ErrorCode::kSlowConsumer: return "slow consumer";
    case ErrorCode::kServerFull: return "server full";
    case ErrorCode::kFrameTimeout: return "frame timeout";
  }
  return "unknown error";
}

}  // namespace ringhub::protocol
