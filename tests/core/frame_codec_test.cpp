// Unit tests for core/frame_codec: exact wire bytes of every frame the hub and clients build, and the
// ERROR code validate_client_header gives each malformed header (docs/protocol.md, "Errors").
#include "core/frame_codec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

namespace ringhub::protocol {
// Failure messages name the code instead of dumping the enum's bytes.
void PrintTo(ErrorCode code, std::ostream* os) {
  *os << static_cast<int>(code) << " (" << error_code_name(code) << ")";
}
}  // namespace ringhub::protocol

namespace ringhub::codec {
namespace {

using protocol::kHeaderSize;
using protocol::kIdSize;
using protocol::kMaxBodySize;
using protocol::kMaxErrorReasonSize;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint32_t kMiB = 1U << 20;

FrameHeader header_of(const Bytes& frame) {
  return decode_header(std::span<const std::uint8_t, kHeaderSize>(frame.data(), kHeaderSize));
}

Bytes encoded(const FrameHeader& header) {
  Bytes out(kHeaderSize);
  encode_header(std::span<std::uint8_t, kHeaderSize>(out.data(), kHeaderSize), header);
  return out;
}

Bytes relay_frame(std::size_t receivers, std::size_t body_size) {
  std::vector<UserId> ids(receivers);
  std::iota(ids.begin(), ids.end(), UserId{1});
  const Bytes body(body_size, 0xAB);
  Bytes out;
  append_relay(out, ids, body);
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

Bytes text(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

TEST(FrameCodecHeader, EncodesLittleEndianAndDecodesBack) {
  const FrameHeader header{FrameType::kRelay, 7, 0x1234, 0xA0B0C0D0};
  const Bytes bytes = encoded(header);
  EXPECT_EQ(bytes, (Bytes{0x03, 0x07, 0x34, 0x12, 0xD0, 0xC0, 0xB0, 0xA0}));
  const FrameHeader back = header_of(bytes);
  EXPECT_EQ(back.type, header.type);
  EXPECT_EQ(back.count, header.count);
  EXPECT_EQ(back.flags, header.flags);
  EXPECT_EQ(back.length, header.length);
}

TEST(FrameCodecHeader, DecodesAnyTypeByteWithoutJudging) {
  const FrameHeader back = header_of(Bytes{0x42, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
  EXPECT_EQ(static_cast<unsigned>(back.type), 0x42U);
  EXPECT_EQ(back.count, 0xFF);
  EXPECT_EQ(back.flags, 0xFFFF);
  EXPECT_EQ(back.length, 0xFFFFFFFFU);
}

TEST(FrameCodecClientFrames, IdentityAndListRequestsAreBareHeadersAndValid) {
  Bytes identity;
  append_identity_request(identity);
  EXPECT_EQ(identity, (Bytes{0x01, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(validate_client_header(header_of(identity)), std::nullopt);

  Bytes list;
  append_list_request(list);
  EXPECT_EQ(list, (Bytes{0x02, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(validate_client_header(header_of(list)), std::nullopt);
}

// The worked example in docs/protocol.md: "foobar" to ids 2 and 3.
TEST(FrameCodecClientFrames, RelayMatchesTheProtocolDocExample) {
  Bytes frame;
  const std::array<UserId, 2> to{2, 3};
  append_relay(frame, to, text("foobar"));
  const Bytes expected = concat({{0x03, 0x02, 0, 0, 0x16, 0, 0, 0},
                                 {2, 0, 0, 0, 0, 0, 0, 0},
                                 {3, 0, 0, 0, 0, 0, 0, 0},
                                 text("foobar")});
  EXPECT_EQ(frame, expected);
  EXPECT_EQ(validate_client_header(header_of(frame)), std::nullopt);
}

TEST(FrameCodecClientFrames, RelaySizesAtTheLimitsAreValid) {
  struct Case {
    std::size_t receivers;
    std::size_t body;
  };
  for (const Case c :
       {Case{1, 5}, Case{255, 5}, Case{1, 0}, Case{255, 0}, Case{1, kMaxBodySize}, Case{255, kMaxBodySize}}) {
    SCOPED_TRACE(testing::Message() << c.receivers << " receivers, " << c.body << "-byte body");
    const Bytes frame = relay_frame(c.receivers, c.body);
    const FrameHeader header = header_of(frame);
    EXPECT_EQ(header.count, c.receivers);
    EXPECT_EQ(header.length, kIdSize * c.receivers + c.body);
    EXPECT_EQ(frame.size(), kHeaderSize + header.length);
    EXPECT_EQ(load_u64(frame.data() + relay_body_offset(header.count) - kIdSize), c.receivers);
    EXPECT_EQ(validate_client_header(header), std::nullopt);
  }
}

TEST(FrameCodecClientFrames, RelayBodyOneByteOverTheLimitIsTooLarge) {
  const Bytes frame = relay_frame(1, kMaxBodySize + 1);
  EXPECT_EQ(validate_client_header(header_of(frame)), ErrorCode::kFrameTooLarge);
}

struct Malformed {
  const char* what;
  FrameHeader header;
  ErrorCode expected;
};

FrameHeader raw(std::uint8_t type, std::uint8_t count, std::uint16_t flags, std::uint32_t length) {
  return FrameHeader{static_cast<FrameType>(type), count, flags, length};
}

// One row per rule, plus rows pinning the order in which the rules are checked.
const Malformed kMalformed[] = {
    {"type 0x00", raw(0x00, 0, 0, 0), ErrorCode::kUnknownType},
    {"type 0x04", raw(0x04, 0, 0, 0), ErrorCode::kUnknownType},
    {"IDENTITY_REPLY from a client", raw(0x81, 0, 0, 8), ErrorCode::kUnknownType},
    {"LIST_REPLY from a client", raw(0x82, 0, 0, 0), ErrorCode::kUnknownType},
    {"DELIVER from a client", raw(0x83, 0, 0, 8), ErrorCode::kUnknownType},
    {"ERROR from a client", raw(0xFF, 0, 0, 1), ErrorCode::kUnknownType},
    {"unknown type beats nonzero flags", raw(0x7F, 3, 1, 0xFFFFFFFF), ErrorCode::kUnknownType},
    {"IDENTITY with flags", raw(0x01, 0, 1, 0), ErrorCode::kNonzeroFlags},
    {"LIST with high flag bit", raw(0x02, 0, 0x8000, 0), ErrorCode::kNonzeroFlags},
    {"RELAY with flags", raw(0x03, 1, 0x0100, 8), ErrorCode::kNonzeroFlags},
    {"flags beat a bad count", raw(0x03, 0, 1, 0), ErrorCode::kNonzeroFlags},
    {"IDENTITY with count 1", raw(0x01, 1, 0, 0), ErrorCode::kBadReceiverCount},
    {"LIST with count 255", raw(0x02, 255, 0, 0), ErrorCode::kBadReceiverCount},
    {"IDENTITY count beats length", raw(0x01, 1, 0, 8), ErrorCode::kBadReceiverCount},
    {"IDENTITY with length 1", raw(0x01, 0, 0, 1), ErrorCode::kLengthInconsistent},
    {"LIST with length 8", raw(0x02, 0, 0, 8), ErrorCode::kLengthInconsistent},
    {"IDENTITY with length 0xFFFFFFFF", raw(0x01, 0, 0, 0xFFFFFFFF), ErrorCode::kLengthInconsistent},
    {"RELAY with count 0", raw(0x03, 0, 0, 8), ErrorCode::kBadReceiverCount},
    {"RELAY count 0 beats huge length", raw(0x03, 0, 0, 0xFFFFFFFF), ErrorCode::kBadReceiverCount},
    {"RELAY length 0", raw(0x03, 1, 0, 0), ErrorCode::kLengthInconsistent},
    {"RELAY length 8n - 1", raw(0x03, 2, 0, 15), ErrorCode::kLengthInconsistent},
    {"RELAY 255 ids, length 8n - 1", raw(0x03, 255, 0, 255 * 8 - 1), ErrorCode::kLengthInconsistent},
    {"RELAY body 1 MiB + 1", raw(0x03, 1, 0, 8 + kMiB + 1), ErrorCode::kFrameTooLarge},
    {"RELAY 255 ids, body 1 MiB + 1", raw(0x03, 255, 0, 255 * 8 + kMiB + 1), ErrorCode::kFrameTooLarge},
    {"RELAY length 0xFFFFFFFF", raw(0x03, 1, 0, 0xFFFFFFFF), ErrorCode::kFrameTooLarge},
};

TEST(FrameCodecValidation, EachMalformedHeaderGetsItsErrorCode) {
  for (const Malformed& m : kMalformed) {
    SCOPED_TRACE(m.what);
    EXPECT_EQ(validate_client_header(m.header), m.expected);
  }
}

TEST(FrameCodecValidation, RelayExactlyAtTheLengthBoundsIsValid) {
  EXPECT_EQ(validate_client_header(raw(0x03, 2, 0, 16)), std::nullopt);
  EXPECT_EQ(validate_client_header(raw(0x03, 255, 0, protocol::kMaxClientFrameLength)), std::nullopt);
}

TEST(FrameCodecDeliver, PrefixIsHeaderAndSenderEndingAtTheBody) {
  std::array<std::uint8_t, protocol::kDeliverPrefixSize> prefix{};
  encode_deliver_prefix(prefix, 0x0102030405060708, 6);
  const Bytes expected{0x83, 0, 0, 0, 0x0E, 0, 0, 0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
  EXPECT_EQ(Bytes(prefix.begin(), prefix.end()), expected);
}

// The hub's zero-copy path: the prefix written over the last 16 bytes before a RELAY's body turns
// the rest of the frame into the DELIVER from docs/protocol.md.
TEST(FrameCodecDeliver, PrefixRewritesARelayInPlace) {
  Bytes frame;
  const std::array<UserId, 2> to{2, 3};
  append_relay(frame, to, text("foobar"));
  const std::size_t body = relay_body_offset(2);
  std::span<std::uint8_t, protocol::kDeliverPrefixSize> prefix(frame.data() + body - 16, 16);
  encode_deliver_prefix(prefix, 1, 6);
  const Bytes deliver(frame.begin() + static_cast<std::ptrdiff_t>(body - 16), frame.end());
  EXPECT_EQ(deliver, concat({{0x83, 0, 0, 0, 0x0E, 0, 0, 0}, {1, 0, 0, 0, 0, 0, 0, 0}, text("foobar")}));
}

TEST(FrameCodecReplies, IdentityReplyCarriesTheId) {
  Bytes out;
  append_identity_reply(out, 1);
  EXPECT_EQ(out, (Bytes{0x81, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(out.size(), identity_reply_size());
}

TEST(FrameCodecReplies, EmptyListReplyIsABareHeader) {
  Bytes out;
  append_list_reply(out, {});
  EXPECT_EQ(out, (Bytes{0x82, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(out.size(), list_reply_size(0));
}

// More ids than the one-byte count holds: the count stays 0 and the length says how many.
TEST(FrameCodecReplies, ListReplyHoldsMoreThan255Ids) {
  std::vector<UserId> ids(300);
  std::iota(ids.begin(), ids.end(), UserId{1});
  Bytes out;
  append_list_reply(out, ids);
  ASSERT_EQ(out.size(), list_reply_size(ids.size()));
  const FrameHeader header = header_of(out);
  EXPECT_EQ(header.type, FrameType::kListReply);
  EXPECT_EQ(header.count, 0);
  EXPECT_EQ(header.length, 300 * kIdSize);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(load_u64(out.data() + kHeaderSize + i * kIdSize), ids[i]) << "id " << i;
  }
}

TEST(FrameCodecReplies, ErrorFrameMatchesTheProtocolDocExample) {
  Bytes out;
  append_error(out, ErrorCode::kNonzeroFlags, "nonzero flags");
  EXPECT_EQ(out, concat({{0xFF, 0, 0, 0, 0x0E, 0, 0, 0, 0x05}, text("nonzero flags")}));
}

TEST(FrameCodecReplies, ErrorFrameWithEmptyReasonIsJustTheCode) {
  Bytes out;
  append_error(out, ErrorCode::kServerFull, "");
  EXPECT_EQ(out, (Bytes{0xFF, 0, 0, 0, 1, 0, 0, 0, 0x07}));
}

TEST(FrameCodecReplies, ErrorReasonIsCutAt200Bytes) {
  for (const std::size_t size : {kMaxErrorReasonSize, kMaxErrorReasonSize + 1, std::size_t{1000}}) {
    SCOPED_TRACE(size);
    std::string reason(size, 'r');
    reason[kMaxErrorReasonSize - 1] = 'L';  // the last byte kept
    Bytes out;
    append_error(out, ErrorCode::kSlowConsumer, reason);
    ASSERT_EQ(out.size(), kHeaderSize + 1 + kMaxErrorReasonSize);
    EXPECT_EQ(header_of(out).length, 1 + kMaxErrorReasonSize);
    EXPECT_EQ(out[kHeaderSize], 6);
    EXPECT_EQ(out.back(), 'L');
  }
}

TEST(FrameCodecReplies, AppendsAfterExistingBytes) {
  Bytes out{0xEE};
  append_identity_reply(out, 9);
  append_list_request(out);
  ASSERT_EQ(out.size(), 1 + identity_reply_size() + kHeaderSize);
  EXPECT_EQ(out[0], 0xEE);
  EXPECT_EQ(out[1], 0x81);
  EXPECT_EQ(out[1 + identity_reply_size()], 0x02);
}

TEST(FrameCodecErrorNames, EveryCodeHasItsDocumentedName) {
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kUnknownType), "unknown frame type");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kBadReceiverCount), "bad receiver count");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kFrameTooLarge), "frame too large");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kLengthInconsistent), "length inconsistent with count");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kNonzeroFlags), "nonzero flags");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kSlowConsumer), "slow consumer");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kServerFull), "server full");
  EXPECT_EQ(protocol::error_code_name(ErrorCode::kFrameTimeout), "frame timeout");
}

}  // namespace
}  // namespace ringhub::codec
