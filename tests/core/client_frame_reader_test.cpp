// Tests for core/client_frame_reader: every hub frame type read whole, byte by byte and split at every
// point with the same events; DELIVER bodies handed on in place; each malformed header's error (sticky);
// the limits (1 MiB body, 200-byte reason, the LIST_REPLY cap) at and one past their edge.
#include "core/client_frame_reader.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"

namespace ringhub {
namespace {

using protocol::ErrorCode;
using protocol::FrameType;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;

// Every event as one line of text, DELIVER byte runs concatenated, so two feedings compare as strings.
struct Recorder {
  std::vector<std::string> events;
  std::vector<const std::uint8_t*> body_runs;  // where each DELIVER byte run pointed

  // Appends "word n1 n2 ..." as one event (appends, not operator+ chains: g++ 12 -O3 -Wrestrict).
  void add(std::string_view word, std::initializer_list<std::uint64_t> numbers) {
    std::string line(word);
    for (const std::uint64_t n : numbers) {
      line.push_back(' ');
      line.append(std::to_string(n));
    }
    events.push_back(std::move(line));
  }
  void on_identity_reply(UserId id) { add("identity", {id}); }
  void on_list_reply(std::span<const UserId> ids) {
    add("list", {});
    for (const UserId id : ids) {
      events.back().push_back(' ');
      events.back().append(std::to_string(id));
    }
  }
  void on_deliver_begin(UserId sender, std::uint32_t size) {
    add("deliver", {sender, size});
    events.back().push_back(' ');
  }
  void on_deliver_bytes(std::span<const std::uint8_t> bytes) {
    events.back().append(bytes.begin(), bytes.end());
    body_runs.push_back(bytes.data());
  }
  void on_deliver_end() { events.back() += "|end"; }
  void on_error(std::uint8_t code, std::string_view reason) {
    add("error", {code});
    events.back().push_back(' ');
    events.back().append(reason);
  }
};

Bytes deliver(UserId sender, std::string_view body) {
  Bytes out(protocol::kDeliverPrefixSize);
  codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(out.data(), out.size()),
                               sender, static_cast<std::uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes raw_header(std::uint8_t type, std::uint8_t count, std::uint16_t flags, std::uint32_t length) {
  Bytes out(protocol::kHeaderSize);
  codec::encode_header(std::span<std::uint8_t, protocol::kHeaderSize>(out.data(), out.size()),
                       protocol::FrameHeader{static_cast<FrameType>(type), count, flags, length});
  return out;
}

// One of each hub frame, and the events they give.
Bytes sample_stream() {
  Bytes out;
  codec::append_identity_reply(out, 7);
  codec::append_list_reply(out, std::vector<UserId>{2, 3, 900});
  const Bytes d = deliver(5, "foobar");
  out.insert(out.end(), d.begin(), d.end());
  codec::append_list_reply(out, {});
  const Bytes empty = deliver(6, "");
  out.insert(out.end(), empty.begin(), empty.end());
  codec::append_error(out, ErrorCode::kSlowConsumer, "slow consumer");
  return out;
}
const std::vector<std::string> kSampleEvents = {"identity 7", "list 2 3 900",     "deliver 5 6 foobar|end",
                                                "list",       "deliver 6 0 |end", "error 6 slow consumer"};

std::vector<std::string> feed_in_pieces(const Bytes& stream, std::size_t piece) {
  ClientFrameReader reader;
  Recorder recorder;
  for (std::size_t at = 0; at < stream.size(); at += piece) {
    const Bytes part(stream.begin() + static_cast<std::ptrdiff_t>(at),
                     stream.begin() + static_cast<std::ptrdiff_t>(std::min(stream.size(), at + piece)));
    EXPECT_EQ(reader.feed(part, recorder), std::nullopt);
  }
  EXPECT_TRUE(reader.at_boundary());
  return recorder.events;
}

std::optional<HubFrameError> error_of(const Bytes& stream) {
  ClientFrameReader reader;
  Recorder recorder;
  return reader.feed(stream, recorder);
}

TEST(ClientFrameReaderTest, EveryHubFrameTypeIsReportedWhole) {
  EXPECT_EQ(feed_in_pieces(sample_stream(), sample_stream().size()), kSampleEvents);
}

TEST(ClientFrameReaderTest, ByteByByteGivesTheSameEvents) {
  EXPECT_EQ(feed_in_pieces(sample_stream(), 1), kSampleEvents);
}

TEST(ClientFrameReaderTest, EverySplitPointGivesTheSameEvents) {
  const Bytes stream = sample_stream();
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    ClientFrameReader reader;
    Recorder recorder;
    const std::span<const std::uint8_t> all(stream);
    ASSERT_EQ(reader.feed(all.first(cut), recorder), std::nullopt) << "cut at " << cut;
    ASSERT_EQ(reader.feed(all.subspan(cut), recorder), std::nullopt) << "cut at " << cut;
    EXPECT_EQ(recorder.events, kSampleEvents) << "cut at " << cut;
    EXPECT_TRUE(reader.at_boundary());
  }
}

TEST(ClientFrameReaderTest, DeliverBodyIsHandedOnInPlace) {
  const Bytes stream = deliver(9, "in place");
  ClientFrameReader reader;
  Recorder recorder;
  ASSERT_EQ(reader.feed(stream, recorder), std::nullopt);
  ASSERT_EQ(recorder.body_runs.size(), 1U);
  EXPECT_EQ(recorder.body_runs[0], stream.data() + protocol::kDeliverPrefixSize);
}

TEST(ClientFrameReaderTest, PartialFrameIsHeldUntilItsLastByte) {
  const Bytes stream = deliver(9, "abc");
  ClientFrameReader reader;
  Recorder recorder;
  ASSERT_EQ(reader.feed(std::span(stream).first(stream.size() - 1), recorder), std::nullopt);
  EXPECT_FALSE(reader.at_boundary());
  EXPECT_EQ(recorder.events, std::vector<std::string>{"deliver 9 3 ab"});
  ASSERT_EQ(reader.feed(std::span(stream).last(1), recorder), std::nullopt);
  EXPECT_TRUE(reader.at_boundary());
  EXPECT_EQ(recorder.events, std::vector<std::string>{"deliver 9 3 abc|end"});
}

TEST(ClientFrameReaderTest, MalformedHeadersGiveTheirErrorInOrder) {
  EXPECT_EQ(error_of(raw_header(0x03, 0, 0, 8)), HubFrameError::kUnknownType) << "a client frame type";
  EXPECT_EQ(error_of(raw_header(0x00, 1, 1, 0)), HubFrameError::kUnknownType) << "type is checked first";
  EXPECT_EQ(error_of(raw_header(0x83, 1, 1, 8)), HubFrameError::kNonzeroCount) << "then count";
  EXPECT_EQ(error_of(raw_header(0x83, 0, 1, 8)), HubFrameError::kNonzeroFlags) << "then flags";
  EXPECT_EQ(error_of(raw_header(0x81, 0, 0, 16)), HubFrameError::kBadLength);
  EXPECT_EQ(error_of(raw_header(0x81, 0, 0, 0)), HubFrameError::kBadLength);
  EXPECT_EQ(error_of(raw_header(0x82, 0, 0, 12)), HubFrameError::kBadLength);
  EXPECT_EQ(error_of(raw_header(0x83, 0, 0, 7)), HubFrameError::kBadLength);
  EXPECT_EQ(error_of(raw_header(0xFF, 0, 0, 0)), HubFrameError::kBadLength);
}

TEST(ClientFrameReaderTest, LimitsHoldAtTheirEdge) {
  const auto body_max = static_cast<std::uint32_t>(protocol::kIdSize + protocol::kMaxBodySize);
  EXPECT_EQ(error_of(raw_header(0x83, 0, 0, body_max)), std::nullopt) << "a 1 MiB body is allowed";
  EXPECT_EQ(error_of(raw_header(0x83, 0, 0, body_max + 1)), HubFrameError::kTooLarge);
  const auto reason_max = static_cast<std::uint32_t>(1 + protocol::kMaxErrorReasonSize);
  EXPECT_EQ(error_of(raw_header(0xFF, 0, 0, reason_max)), std::nullopt) << "a 200-byte reason is allowed";
  EXPECT_EQ(error_of(raw_header(0xFF, 0, 0, reason_max + 1)), HubFrameError::kTooLarge);

  ClientFrameReader capped(16);
  Recorder recorder;
  EXPECT_EQ(capped.feed(raw_header(0x82, 0, 0, 16), recorder), std::nullopt) << "two ids fit a 16-byte cap";
  ClientFrameReader over(16);
  EXPECT_EQ(over.feed(raw_header(0x82, 0, 0, 24), recorder), HubFrameError::kTooLarge);
}

TEST(ClientFrameReaderTest, ErrorIsStickyAndReadsNothingMore) {
  Bytes stream = raw_header(0x83, 0, 1, 8);
  codec::append_identity_reply(stream, 4);
  ClientFrameReader reader;
  Recorder recorder;
  EXPECT_EQ(reader.feed(stream, recorder), HubFrameError::kNonzeroFlags);
  Bytes more;
  codec::append_identity_reply(more, 5);
  EXPECT_EQ(reader.feed(more, recorder), HubFrameError::kNonzeroFlags);
  EXPECT_EQ(reader.error(), HubFrameError::kNonzeroFlags);
  EXPECT_TRUE(recorder.events.empty()) << "nothing after the malformed header is reported";
}

TEST(ClientFrameReaderTest, FramesBeforeAMalformedHeaderAreReported) {
  Bytes stream;
  codec::append_identity_reply(stream, 4);
  const Bytes bad = raw_header(0x01, 0, 0, 0);
  stream.insert(stream.end(), bad.begin(), bad.end());
  ClientFrameReader reader;
  Recorder recorder;
  EXPECT_EQ(reader.feed(stream, recorder), HubFrameError::kUnknownType);
  EXPECT_EQ(recorder.events, std::vector<std::string>{"identity 4"});
}

TEST(ClientFrameReaderTest, ErrorNamesAreDistinct) {
  EXPECT_EQ(hub_frame_error_name(HubFrameError::kTooLarge), "frame over the protocol's limit");
  EXPECT_NE(hub_frame_error_name(HubFrameError::kBadLength), hub_frame_error_name(HubFrameError::kTooLarge));
}

}  // namespace
}  // namespace ringhub
