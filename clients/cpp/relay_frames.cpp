// What a blocking relay client makes of whole hub frames; see clients/cpp/relay_frames.hpp.
#include "clients/cpp/relay_frames.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <span>

#include "clients/cpp/async_relay_client.hpp"
#include "core/frame_codec.hpp"

namespace ringhub::client::detail {

using protocol::FrameType;
using protocol::kIdSize;

Error Deadline::expired(std::string_view awaited) const {
  std::string message = fmt::format("timed out after {} ms", timeout_.count());
  if (!awaited.empty()) {
    message += fmt::format(" waiting for {}", awaited);
  }
  return system_error(ETIMEDOUT, std::move(message));
}

std::string frame_type_name(FrameType type) {
  switch (type) {
    case FrameType::kIdentity: return "IDENTITY";
    case FrameType::kList: return "LIST";
    case FrameType::kRelay: return "RELAY";
    case FrameType::kIdentityReply: return "IDENTITY_REPLY";
    case FrameType::kListReply: return "LIST_REPLY";
    case FrameType::kDeliver: return "DELIVER";
    case FrameType::kError: return "ERROR";
  }
  return fmt::format("frame type 0x{:02x}", static_cast<unsigned>(type));
}

Error unexpected(const Frame& frame, std::string_view awaited) {
  return system_error(
      EPROTO, fmt::format("hub sent {} while we waited for {}", frame_type_name(frame.header.type), awaited));
}

// The reader checked the frame: an ERROR has its code byte, a DELIVER its sender, a LIST_REPLY whole ids.
Error hub_error(const Frame& frame) {
  const auto code = static_cast<protocol::ErrorCode>(frame.payload[0]);
  std::string message = fmt::format("hub closed the connection: error {} ({})", frame.payload[0],
                                    protocol::error_code_name(code));
  const auto raw = std::span(frame.payload).subspan(1);
  const std::string reason =
      printable_reason(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
  if (!reason.empty() && reason != protocol::error_code_name(code)) {  // ringhub's reason is the name
    message += ": " + reason;
  }
  return protocol_error(code, std::move(message));
}

Delivery parse_delivery(const Frame& frame) {
  const auto body = std::span(frame.payload).subspan(kIdSize);
  return Delivery{codec::load_u64(frame.payload.data()), {body.begin(), body.end()}};
}

std::vector<protocol::UserId> parse_ids(const Frame& frame) {
  std::vector<protocol::UserId> ids(frame.payload.size() / kIdSize);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ids[i] = codec::load_u64(frame.payload.data() + i * kIdSize);
  }
  return ids;
}

}  // namespace ringhub::client::detail
