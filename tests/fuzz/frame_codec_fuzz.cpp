// Fuzz target for core/frame_codec and core/protocol.hpp: header decode/encode round-trips both ways,
// validate_client_header agrees with the rule table of docs/protocol.md ("Errors", checked in order), and
// every encoder's frame decodes back to what was encoded, within the documented limits.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace ringhub::fuzz {
namespace {

using protocol::ErrorCode;
using protocol::FrameHeader;
using protocol::FrameType;
using protocol::kHeaderSize;
using protocol::kIdSize;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;

// docs/protocol.md, "Errors", written out independently of the codec: the first failing rule gives the code.
std::optional<ErrorCode> documented_error(std::span<const std::uint8_t, kHeaderSize> raw) {
  const std::uint8_t type = raw[0];
  const std::uint8_t count = raw[1];
  const unsigned flags = raw[2] | (raw[3] << 8);
  std::uint32_t length = 0;
  for (int i = 3; i >= 0; --i) {
    length = (length << 8) | raw[4 + i];
  }
  if (type != 0x01 && type != 0x02 && type != 0x03) {
    return ErrorCode::kUnknownType;
  }
  if (flags != 0) {
    return ErrorCode::kNonzeroFlags;
  }
  if (type != 0x03) {
    if (count != 0) {
      return ErrorCode::kBadReceiverCount;
    }
    return length != 0 ? std::optional(ErrorCode::kLengthInconsistent) : std::nullopt;
  }
  if (count == 0) {
    return ErrorCode::kBadReceiverCount;
  }
  if (length < 8U * count) {
    return ErrorCode::kLengthInconsistent;
  }
  if (length - 8U * count > 1048576U) {
    return ErrorCode::kFrameTooLarge;
  }
  return std::nullopt;
}

FrameHeader header_of(const Bytes& frame) {
  require(frame.size() >= kHeaderSize, "an encoded frame holds a header");
  return codec::decode_header(std::span<const std::uint8_t, kHeaderSize>(frame.data(), kHeaderSize));
}

void check_header_round_trip(std::span<const std::uint8_t, kHeaderSize> raw) {
  const FrameHeader header = codec::decode_header(raw);
  std::uint8_t again[kHeaderSize];
  codec::encode_header(std::span<std::uint8_t, kHeaderSize>(again, kHeaderSize), header);
  require(std::memcmp(again, raw.data(), kHeaderSize) == 0, "encode(decode(bytes)) == bytes");
  require(codec::validate_client_header(header) == documented_error(raw),
          "validation follows docs/protocol.md");
}

// Ids and a body carved from the stream: the first byte is the receiver count (0 is valid input here:
// the encoder is checked against what the validator then says).
void check_relay_round_trip(std::span<const std::uint8_t> stream) {
  if (stream.empty()) {
    return;
  }
  const std::size_t count = std::min<std::size_t>(stream[0], (stream.size() - 1) / kIdSize);
  std::vector<UserId> receivers(count);
  for (std::size_t i = 0; i < count; ++i) {
    receivers[i] = codec::load_u64(stream.data() + 1 + kIdSize * i);
  }
  const auto body = stream.subspan(1 + kIdSize * count);
  Bytes frame;
  codec::append_relay(frame, receivers, body);
  const FrameHeader header = header_of(frame);
  require(header.type == FrameType::kRelay && header.count == count && header.flags == 0, "RELAY header");
  require(frame.size() == kHeaderSize + header.length, "RELAY length covers ids and body");
  require(codec::relay_body_offset(header.count) + body.size() == frame.size(), "body starts after the ids");
  for (std::size_t i = 0; i < count; ++i) {
    require(codec::load_u64(frame.data() + kHeaderSize + kIdSize * i) == receivers[i], "ids round-trip");
  }
  require(std::equal(body.begin(), body.end(),
                     frame.begin() + static_cast<std::ptrdiff_t>(codec::relay_body_offset(header.count))),
          "body round-trips");
  require(codec::validate_client_header(header).has_value() == (count == 0),
          "an encoded RELAY is valid iff n>0");

  // The hub's in-place rewrite: the DELIVER prefix over the last id ends where the body starts.
  if (count > 0) {
    const std::size_t at = codec::relay_body_offset(header.count) - protocol::kDeliverPrefixSize;
    codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(
                                     frame.data() + at, protocol::kDeliverPrefixSize),
                                 receivers[0], static_cast<std::uint32_t>(body.size()));
    const auto deliver =
        codec::decode_header(std::span<const std::uint8_t, kHeaderSize>(frame.data() + at, kHeaderSize));
    require(deliver.type == FrameType::kDeliver && deliver.count == 0 && deliver.flags == 0,
            "DELIVER header");
    require(at + kHeaderSize + deliver.length == frame.size(), "DELIVER length ends at the body's end");
    require(codec::load_u64(frame.data() + at + kHeaderSize) == receivers[0], "DELIVER names the sender");
  }
}

void check_replies(std::span<const std::uint8_t> stream) {
  std::vector<UserId> ids(stream.size() / kIdSize);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ids[i] = codec::load_u64(stream.data() + kIdSize * i);
  }
  Bytes list;
  codec::append_list_reply(list, ids);
  require(list.size() == codec::list_reply_size(ids.size()), "LIST_REPLY size");
  const FrameHeader lh = header_of(list);
  require(lh.type == FrameType::kListReply && lh.count == 0 && lh.length == kIdSize * ids.size(),
          "LIST_REPLY");
  require(std::memcmp(list.data() + kHeaderSize, stream.data(), kIdSize * ids.size()) == 0, "LIST ids");

  Bytes identity;
  codec::append_identity_reply(identity, ids.empty() ? 0 : ids[0]);
  require(identity.size() == codec::identity_reply_size(), "IDENTITY_REPLY size");
  require(header_of(identity).length == kIdSize, "IDENTITY_REPLY length");

  const std::string_view reason(reinterpret_cast<const char*>(stream.data()), stream.size());
  const auto code = static_cast<ErrorCode>(stream.empty() ? 0 : stream[0]);
  Bytes error;
  codec::append_error(error, code, reason);
  const FrameHeader eh = header_of(error);
  const std::size_t kept = std::min(reason.size(), protocol::kMaxErrorReasonSize);
  require(eh.type == FrameType::kError && eh.length == 1 + kept, "ERROR reason capped at 200 bytes");
  require(error[kHeaderSize] == static_cast<std::uint8_t>(code), "ERROR code byte");
  require(std::memcmp(error.data() + kHeaderSize + 1, reason.data(), kept) == 0, "ERROR reason prefix");
  require(!protocol::error_code_name(code).empty(), "every code has a name");
}

// Every invariant of this target on one input.
void check_codec(const FuzzInput& input) {
  const auto stream = input.stream;
  if (stream.size() >= kHeaderSize) {
    check_header_round_trip(stream.first<kHeaderSize>());
  }
  check_relay_round_trip(stream);
  check_replies(stream);
}

}  // namespace
}  // namespace ringhub::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ringhub::fuzz::check_input(data, size, ringhub::fuzz::check_codec);
}
