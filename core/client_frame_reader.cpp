// ClientFrameReader: header checks and the gathering of fixed payloads and LIST_REPLY ids; see
// core/client_frame_reader.hpp.
#include "core/client_frame_reader.hpp"

namespace ringhub {

using protocol::FrameType;
using protocol::kHeaderSize;
using protocol::kIdSize;

std::string_view hub_frame_error_name(HubFrameError error) {
  switch (error) {
    case HubFrameError::kUnknownType: return "not a hub frame type";
    case HubFrameError::kNonzeroCount: return "nonzero count in a hub frame";
    case HubFrameError::kNonzeroFlags: return "nonzero flags in a hub frame";
    case HubFrameError::kBadLength: return "length wrong for the frame type";
    case HubFrameError::kTooLarge: return "frame over the protocol's limit";
  }
  return "unknown hub frame error";
}

std::optional<HubFrameError> validate_hub_header(const protocol::FrameHeader& header,
                                                 std::size_t max_list_reply_length) {
  const FrameType type = header.type;
  if (type != FrameType::kIdentityReply && type != FrameType::kListReply && type != FrameType::kDeliver &&
      type != FrameType::kError) {
    return HubFrameError::kUnknownType;
  }
  if (header.count != 0) {
    return HubFrameError::kNonzeroCount;
  }
  if (header.flags != 0) {
    return HubFrameError::kNonzeroFlags;
  }
  const std::size_t length = header.length;
  switch (type) {
    case FrameType::kIdentityReply:
      return length == kIdSize ? std::nullopt : std::optional(HubFrameError::kBadLength);
    case FrameType::kListReply:
      if (length % kIdSize != 0) {
        return HubFrameError::kBadLength;
      }
      return length <= max_list_reply_length ? std::nullopt : std::optional(HubFrameError::kTooLarge);
    case FrameType::kDeliver:
      if (length < kIdSize) {
        return HubFrameError::kBadLength;
      }
      return length - kIdSize <= protocol::kMaxBodySize ? std::nullopt
                                                        : std::optional(HubFrameError::kTooLarge);
    default:  // ERROR
      if (length < 1) {
        return HubFrameError::kBadLength;
      }
      return length - 1 <= protocol::kMaxErrorReasonSize ? std::nullopt
                                                         : std::optional(HubFrameError::kTooLarge);
  }
}

const std::uint8_t* ClientFrameReader::take(std::span<const std::uint8_t>& bytes, std::uint8_t* into,
                                            std::size_t& have, std::size_t need) {
  if (have == 0 && bytes.size() >= need) {
    const std::uint8_t* in_place = bytes.data();
    bytes = bytes.subspan(need);
    return in_place;
  }
  const std::size_t n = std::min(need - have, bytes.size());
  std::memcpy(into + have, bytes.data(), n);
  bytes = bytes.subspan(n);
  have += n;
  if (have < need) {
    return nullptr;
  }
  have = 0;
  return into;
}

std::optional<HubFrameError> ClientFrameReader::start_frame(const std::uint8_t* raw) {
  header_ = codec::decode_header(std::span<const std::uint8_t, kHeaderSize>(raw, kHeaderSize));
  if (const auto error = validate_hub_header(header_, max_list_reply_length_)) {
    return error;
  }
  switch (header_.type) {
    case FrameType::kListReply:
      list_.clear();  // grown as ids arrive: an announced length costs nothing until its bytes come
      list_have_ = 0;
      state_ = State::kList;
      break;
    case FrameType::kError: fixed_need_ = header_.length; break;
    default: fixed_need_ = kIdSize; break;  // IDENTITY_REPLY's id, DELIVER's sender
  }
  if (header_.type != FrameType::kListReply) {
    state_ = State::kFixed;
  }
  return std::nullopt;
}

void ClientFrameReader::gather_list(std::span<const std::uint8_t>& bytes) {
  // Ids are little-endian on the wire and in memory (frame_codec.hpp asserts it): copied as bytes.
  const std::size_t n = std::min<std::size_t>(header_.length - list_have_, bytes.size());
  list_.resize((list_have_ + n + kIdSize - 1) / kIdSize);
  std::memcpy(reinterpret_cast<std::uint8_t*>(list_.data()) + list_have_, bytes.data(), n);
  list_have_ += n;
  bytes = bytes.subspan(n);
}

}  // namespace ringhub
