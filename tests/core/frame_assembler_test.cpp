// Tests for core/frame_assembler: whole frames handed on in place (same block, no copy), frames split at
// every byte boundary or fed byte by byte (copied once, counted), header-only frames, malformed headers
// (whole or split) with their ERROR code, stopping from on_frame, at_boundary/reset and memory accounting.
#include "core/frame_assembler.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"
#include "core/shared_block.hpp"

namespace ringhub {
namespace {

using protocol::ErrorCode;
using protocol::FrameType;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;
using Status = FeedResult::Status;

// Assembly figures with a memory account of their own, read as a signed byte count.
struct TestAccounting : AssemblyAccounting {
  TestAccounting() { memory = &account; }
  std::int64_t in_use() const { return account.bytes(); }
  MemoryAccount account;
};

// What a heap block holding the first `filled` bytes of a frame is charged.
std::int64_t charged(std::size_t filled) {
  return static_cast<std::int64_t>(HeapBlock::footprint(static_cast<std::uint32_t>(filled)));
}

Bytes relay_frame(std::vector<UserId> receivers, std::size_t body_size, std::uint8_t seed) {
  Bytes body(body_size);
  for (std::size_t i = 0; i < body_size; ++i) {
    body[i] = static_cast<std::uint8_t>(seed + i);
  }
  Bytes out;
  codec::append_relay(out, receivers, body);
  return out;
}
Bytes identity_frame() {
  Bytes out;
  codec::append_identity_request(out);
  return out;
}
Bytes list_frame() {
  Bytes out;
  codec::append_list_request(out);
  return out;
}
Bytes raw_header(std::uint8_t type, std::uint8_t count, std::uint16_t flags, std::uint32_t length) {
  Bytes out(protocol::kHeaderSize);
  out[0] = type;
  out[1] = count;
  out[2] = static_cast<std::uint8_t>(flags & 0xFF);
  out[3] = static_cast<std::uint8_t>(flags >> 8);
  std::memcpy(out.data() + 4, &length, sizeof length);
  return out;
}

Bytes concat(const std::vector<Bytes>& frames) {
  Bytes out;
  for (const Bytes& f : frames) {
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

// A heap block holding `bytes` from `offset` on (input blocks are not counted in the assembler's figures).
BlockRef block_of(const Bytes& bytes, std::uint32_t offset = 0) {
  BlockRef block = HeapBlock::create(static_cast<std::uint32_t>(offset + bytes.size()));
  std::memset(block.data(), 0xEE, offset);
  std::memcpy(block.data() + offset, bytes.data(), bytes.size());
  return block;
}

// A receive buffer over test-owned bytes, as a pool would lend it: release is a no-op.
struct VectorBlock {
  static void no_release(SharedBlock*) {}

  explicit VectorBlock(Bytes b)
      : bytes(std::move(b)),
        block(bytes.data(), static_cast<std::uint32_t>(bytes.size()), &no_release, nullptr) {}

  Bytes bytes;
  SharedBlock block;
};

struct Collector {
  std::vector<FrameView> frames;
  bool operator()(FrameView&& frame) {
    frames.push_back(std::move(frame));
    return true;
  }
};

Bytes frame_bytes(const FrameView& f) {
  if (!f.block) {
    return {};
  }
  return Bytes(f.bytes(), f.bytes() + f.size());
}

// Checks `got` against the encoded `want`: header fields, and for frames with a payload the bytes.
void expect_frame(const FrameView& got, const Bytes& want, const std::string& where) {
  const auto header = codec::decode_header(
      std::span<const std::uint8_t, protocol::kHeaderSize>(want.data(), protocol::kHeaderSize));
  EXPECT_EQ(got.header.type, header.type) << where;
  EXPECT_EQ(got.header.count, header.count) << where;
  EXPECT_EQ(got.header.length, header.length) << where;
  EXPECT_EQ(got.size(), want.size()) << where;
  if (header.length == 0) {
    EXPECT_FALSE(got.block) << where << ": a header-only frame carries no block";
  } else {
    ASSERT_TRUE(got.block) << where;
    EXPECT_EQ(frame_bytes(got), want) << where;
  }
}

// A few frames of every kind, the payload-carrying ones big enough that splits land in the ids and body.
std::vector<Bytes> sample_frames() {
  return {relay_frame({11, 22, 33}, 20, 1), identity_frame(), relay_frame({44}, 5, 2), list_frame(),
          relay_frame({55, 66}, 0, 3)};
}

TEST(FrameAssemblerTest, WholeFramesInOneBufferAreHandedOnInPlace) {
  const std::vector<Bytes> frames = sample_frames();
  const Bytes stream = concat(frames);
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  const BlockRef input = block_of(stream);
  Collector got;
  const FeedResult r = assembler.feed(input, 0, static_cast<std::uint32_t>(stream.size()), std::ref(got));
  EXPECT_EQ(r.status, Status::kOk);
  ASSERT_EQ(got.frames.size(), frames.size());
  std::uint32_t pos = 0;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    expect_frame(got.frames[i], frames[i], "frame " + std::to_string(i));
    if (got.frames[i].header.length != 0) {
      EXPECT_EQ(got.frames[i].block.get(), input.get()) << "frame " << i << " was copied";
      EXPECT_EQ(got.frames[i].offset, pos) << "frame " << i;
    }
    pos += static_cast<std::uint32_t>(frames[i].size());
  }
  EXPECT_EQ(acct.copied_bytes, 0U);
  EXPECT_EQ(acct.in_use(), 0);
  EXPECT_TRUE(assembler.at_boundary());
  EXPECT_EQ(input->refs(), 1U + 3U);  // the test's ref plus one per relay frame
  got.frames.clear();
  EXPECT_EQ(input->refs(), 1U);
}

TEST(FrameAssemblerTest, OffsetsAreRelativeToTheBlockStart) {
  const Bytes frame = relay_frame({7, 8}, 9, 4);
  const Bytes stream = concat({frame, frame});
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  VectorBlock buffer([&] {
    Bytes b(13, 0xEE);  // bytes before the fed range
    b.insert(b.end(), stream.begin(), stream.end());
    b.resize(b.size() + 6, 0xEE);  // and after it
    return b;
  }());
  BlockRef input(&buffer.block);
  Collector got;
  const FeedResult r = assembler.feed(input, 13, static_cast<std::uint32_t>(stream.size()), std::ref(got));
  EXPECT_EQ(r.status, Status::kOk);
  ASSERT_EQ(got.frames.size(), 2U);
  EXPECT_EQ(got.frames[0].block.get(), &buffer.block);
  EXPECT_EQ(got.frames[0].offset, 13U);
  EXPECT_EQ(got.frames[1].offset, 13U + frame.size());
  EXPECT_EQ(got.frames[1].bytes(), buffer.bytes.data() + 13 + frame.size());
  expect_frame(got.frames[0], frame, "first");
  expect_frame(got.frames[1], frame, "second");
  EXPECT_EQ(acct.copied_bytes, 0U);
}

// Every split point of a multi-frame stream across two buffers gives the same frames; only the frame
// the split cuts is copied (all of it, once), and only if it has a payload.
TEST(FrameAssemblerTest, SplitAtEveryByteBoundaryGivesIdenticalFrames) {
  const std::vector<Bytes> frames = sample_frames();
  const Bytes stream = concat(frames);
  std::vector<std::size_t> starts;  // where each frame begins in the stream
  std::size_t at = 0;
  for (const Bytes& f : frames) {
    starts.push_back(at);
    at += f.size();
  }

  for (std::size_t split = 1; split < stream.size(); ++split) {
    SCOPED_TRACE("split at " + std::to_string(split));
    std::size_t cut = frames.size();  // the frame the split falls inside, if any
    for (std::size_t i = 0; i < frames.size(); ++i) {
      if (starts[i] < split && split < starts[i] + frames[i].size()) {
        cut = i;
      }
    }
    TestAccounting acct;
    Collector got;
    {
      FrameAssembler assembler(&acct);
      const BlockRef first =
          block_of(Bytes(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(split)));
      const BlockRef second =
          block_of(Bytes(stream.begin() + static_cast<std::ptrdiff_t>(split), stream.end()), 5);
      EXPECT_EQ(assembler.feed(first, 0, static_cast<std::uint32_t>(split), std::ref(got)).status,
                Status::kOk);
      EXPECT_EQ(assembler.at_boundary(), cut == frames.size());
      EXPECT_EQ(
          assembler.feed(second, 5, static_cast<std::uint32_t>(stream.size() - split), std::ref(got)).status,
          Status::kOk);
      EXPECT_TRUE(assembler.at_boundary());

      ASSERT_EQ(got.frames.size(), frames.size());
      for (std::size_t i = 0; i < frames.size(); ++i) {
        expect_frame(got.frames[i], frames[i], "frame " + std::to_string(i));
        if (frames[i].size() == protocol::kHeaderSize) {
          continue;
        }
        if (i == cut) {
          EXPECT_NE(got.frames[i].block.get(), first.get());
          EXPECT_NE(got.frames[i].block.get(), second.get());
          EXPECT_EQ(got.frames[i].offset, 0U);
        } else if (starts[i] + frames[i].size() <= split) {
          EXPECT_EQ(got.frames[i].block.get(), first.get()) << "frame " << i;
          EXPECT_EQ(got.frames[i].offset, starts[i]);
        } else {
          EXPECT_EQ(got.frames[i].block.get(), second.get()) << "frame " << i;
          EXPECT_EQ(got.frames[i].offset, 5 + starts[i] - split);
        }
      }
    }  // the assembler and the input blocks are gone; assembled frames must stand alone
    const bool copied = cut != frames.size() && frames[cut].size() > protocol::kHeaderSize;
    EXPECT_EQ(acct.copied_bytes, copied ? frames[cut].size() : 0U);
    EXPECT_EQ(acct.in_use(), copied ? charged(frames[cut].size()) : 0);
    if (copied) {
      EXPECT_EQ(frame_bytes(got.frames[cut]), frames[cut]);
    }
    got.frames.clear();
    EXPECT_EQ(acct.in_use(), 0);
  }
}

TEST(FrameAssemblerTest, OneByteAtATime) {
  const std::vector<Bytes> frames = sample_frames();
  const Bytes stream = concat(frames);
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  for (std::size_t i = 0; i < stream.size(); ++i) {
    const BlockRef one = block_of(Bytes{stream[i]});  // dropped right after: frames must not point into it
    ASSERT_EQ(assembler.feed(one, 0, 1, std::ref(got)).status, Status::kOk) << "byte " << i;
  }
  EXPECT_TRUE(assembler.at_boundary());
  ASSERT_EQ(got.frames.size(), frames.size());
  std::uint64_t payload_frame_bytes = 0;
  std::int64_t blocks_charged = 0;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    expect_frame(got.frames[i], frames[i], "frame " + std::to_string(i));
    if (frames[i].size() > protocol::kHeaderSize) {
      payload_frame_bytes += frames[i].size();
      blocks_charged += charged(frames[i].size());
    }
  }
  EXPECT_EQ(acct.copied_bytes, payload_frame_bytes);
  EXPECT_EQ(acct.in_use(), blocks_charged);
  got.frames.clear();
  EXPECT_EQ(acct.in_use(), 0);
}

TEST(FrameAssemblerTest, ThousandFramesInOneBuffer) {
  std::vector<Bytes> frames;
  for (int i = 0; i < 1000; ++i) {
    if (i % 7 == 3) {
      frames.push_back(i % 2 == 0 ? identity_frame() : list_frame());
      continue;
    }
    std::vector<UserId> receivers(1 + i % 5);
    std::iota(receivers.begin(), receivers.end(), static_cast<UserId>(i) * 10);
    frames.push_back(relay_frame(receivers, static_cast<std::size_t>(i % 53), static_cast<std::uint8_t>(i)));
  }
  const Bytes stream = concat(frames);
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  const BlockRef input = block_of(stream);
  Collector got;
  const FeedResult r = assembler.feed(input, 0, static_cast<std::uint32_t>(stream.size()), std::ref(got));
  EXPECT_EQ(r.status, Status::kOk);
  ASSERT_EQ(got.frames.size(), 1000U);
  for (std::size_t i = 0; i < frames.size(); ++i) {
    expect_frame(got.frames[i], frames[i], "frame " + std::to_string(i));
    if (got.frames[i].block) {
      ASSERT_EQ(got.frames[i].block.get(), input.get());
    }
  }
  EXPECT_EQ(acct.copied_bytes, 0U);
  EXPECT_TRUE(assembler.at_boundary());
}

TEST(FrameAssemblerTest, HeaderOnlyFramesCarryNoBlock) {
  const Bytes stream = concat({identity_frame(), list_frame()});
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  const BlockRef whole = block_of(stream);
  EXPECT_EQ(assembler.feed(whole, 0, 16, std::ref(got)).status, Status::kOk);
  // The same two frames again, the second header split 3 + 5 across buffers.
  const BlockRef first = block_of(Bytes(stream.begin(), stream.begin() + 11));
  const BlockRef second = block_of(Bytes(stream.begin() + 11, stream.end()));
  EXPECT_EQ(assembler.feed(first, 0, 11, std::ref(got)).status, Status::kOk);
  EXPECT_FALSE(assembler.at_boundary());
  EXPECT_EQ(assembler.feed(second, 0, 5, std::ref(got)).status, Status::kOk);
  EXPECT_TRUE(assembler.at_boundary());

  ASSERT_EQ(got.frames.size(), 4U);
  const FrameType want[] = {FrameType::kIdentity, FrameType::kList, FrameType::kIdentity, FrameType::kList};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(got.frames[i].header.type, want[i]) << i;
    EXPECT_EQ(got.frames[i].header.length, 0U) << i;
    EXPECT_FALSE(got.frames[i].block) << i;
    EXPECT_EQ(got.frames[i].size(), protocol::kHeaderSize) << i;
  }
  EXPECT_EQ(acct.copied_bytes, 0U);
  EXPECT_EQ(acct.in_use(), 0);
  EXPECT_EQ(whole->refs(), 1U);
  EXPECT_EQ(second->refs(), 1U);
}

struct BadHeader {
  const char* name;
  Bytes header;
  ErrorCode code;
};

std::vector<BadHeader> bad_headers() {
  const auto relay = static_cast<std::uint8_t>(FrameType::kRelay);
  const auto identity = static_cast<std::uint8_t>(FrameType::kIdentity);
  const auto list = static_cast<std::uint8_t>(FrameType::kList);
  const auto max_length = static_cast<std::uint32_t>(protocol::kIdSize + protocol::kMaxBodySize);
  return {
      {"type 0", raw_header(0x00, 0, 0, 0), ErrorCode::kUnknownType},
      {"type 4", raw_header(0x04, 0, 0, 0), ErrorCode::kUnknownType},
      {"server type DELIVER", raw_header(0x83, 1, 0, 16), ErrorCode::kUnknownType},
      {"identity flags", raw_header(identity, 0, 1, 0), ErrorCode::kNonzeroFlags},
      {"relay high flag bit", raw_header(relay, 1, 0x8000, 8), ErrorCode::kNonzeroFlags},
      {"identity count", raw_header(identity, 1, 0, 0), ErrorCode::kBadReceiverCount},
      {"list length", raw_header(list, 0, 0, 4), ErrorCode::kLengthInconsistent},
      {"relay count 0", raw_header(relay, 0, 0, 8), ErrorCode::kBadReceiverCount},
      {"relay short ids", raw_header(relay, 2, 0, 15), ErrorCode::kLengthInconsistent},
      {"relay body too big", raw_header(relay, 1, 0, max_length + 1), ErrorCode::kFrameTooLarge},
      {"relay length 4 GiB", raw_header(relay, 1, 0, 0xFFFFFFFF), ErrorCode::kFrameTooLarge},
  };
}

TEST(FrameAssemblerTest, MalformedHeaderInOneBufferIsAProtocolError) {
  const Bytes good = relay_frame({1}, 3, 0);
  for (const BadHeader& bad : bad_headers()) {
    SCOPED_TRACE(bad.name);
    TestAccounting acct;
    FrameAssembler assembler(&acct);
    Collector got;
    Bytes stream = concat({good, bad.header});
    stream.resize(stream.size() + 32, 0);  // whatever follows is never read as a frame
    const BlockRef input = block_of(stream);
    const FeedResult r = assembler.feed(input, 0, static_cast<std::uint32_t>(stream.size()), std::ref(got));
    EXPECT_EQ(r.status, Status::kProtocolError);
    EXPECT_EQ(r.error, bad.code);
    ASSERT_EQ(got.frames.size(), 1U);  // the good frame before it still came out
    expect_frame(got.frames[0], good, "good frame");
    EXPECT_EQ(acct.in_use(), 0);
  }
}

TEST(FrameAssemblerTest, MalformedHeaderSplitAcrossBuffersIsAProtocolError) {
  for (const BadHeader& bad : bad_headers()) {
    for (std::size_t split = 1; split < protocol::kHeaderSize; ++split) {
      SCOPED_TRACE(std::string(bad.name) + ", split at " + std::to_string(split));
      TestAccounting acct;
      FrameAssembler assembler(&acct);
      Collector got;
      const BlockRef first =
          block_of(Bytes(bad.header.begin(), bad.header.begin() + static_cast<std::ptrdiff_t>(split)));
      const BlockRef second =
          block_of(Bytes(bad.header.begin() + static_cast<std::ptrdiff_t>(split), bad.header.end()));
      EXPECT_EQ(assembler.feed(first, 0, static_cast<std::uint32_t>(split), std::ref(got)).status,
                Status::kOk);
      const FeedResult r =
          assembler.feed(second, 0, static_cast<std::uint32_t>(protocol::kHeaderSize - split), std::ref(got));
      EXPECT_EQ(r.status, Status::kProtocolError);
      EXPECT_EQ(r.error, bad.code);
      EXPECT_TRUE(got.frames.empty());
      EXPECT_EQ(acct.in_use(), 0);
    }
  }
}

TEST(FrameAssemblerTest, MalformedHeaderRightAfterAnAssembledFrame) {
  const Bytes good = relay_frame({1, 2}, 30, 0);
  Bytes tail(good.begin() + 20, good.end());
  const Bytes bad = raw_header(0x09, 0, 0, 0);
  tail.insert(tail.end(), bad.begin(), bad.end());
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  const BlockRef first = block_of(Bytes(good.begin(), good.begin() + 20));
  const BlockRef second = block_of(tail);
  EXPECT_EQ(assembler.feed(first, 0, 20, std::ref(got)).status, Status::kOk);
  const FeedResult r = assembler.feed(second, 0, static_cast<std::uint32_t>(tail.size()), std::ref(got));
  EXPECT_EQ(r.status, Status::kProtocolError);
  EXPECT_EQ(r.error, ErrorCode::kUnknownType);
  ASSERT_EQ(got.frames.size(), 1U);
  expect_frame(got.frames[0], good, "assembled frame");
}

TEST(FrameAssemblerTest, LargestValidRelayIsAccepted) {
  const Bytes frame = relay_frame({1}, protocol::kMaxBodySize, 0);
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  const BlockRef first = block_of(Bytes(frame.begin(), frame.begin() + 100));
  const BlockRef second = block_of(Bytes(frame.begin() + 100, frame.end()));
  EXPECT_EQ(assembler.feed(first, 0, 100, std::ref(got)).status, Status::kOk);
  EXPECT_EQ(acct.in_use(), charged(100));  // one block, charged for the bytes that arrived
  EXPECT_EQ(assembler.feed(second, 0, static_cast<std::uint32_t>(frame.size() - 100), std::ref(got)).status,
            Status::kOk);
  ASSERT_EQ(got.frames.size(), 1U);
  EXPECT_EQ(got.frames[0].size(), frame.size());
  EXPECT_EQ(frame_bytes(got.frames[0]), frame);
  EXPECT_EQ(acct.copied_bytes, frame.size());
}

TEST(FrameAssemblerTest, OnFrameReturningFalseStops) {
  const std::vector<Bytes> frames = {relay_frame({1}, 4, 0), identity_frame(), relay_frame({2}, 4, 0)};
  const Bytes stream = concat(frames);
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  const BlockRef input = block_of(stream);
  int calls = 0;
  const FeedResult r =
      assembler.feed(input, 0, static_cast<std::uint32_t>(stream.size()), [&calls](FrameView&& frame) {
        ++calls;
        return frame.header.type != FrameType::kIdentity;  // stop after the IDENTITY
      });
  EXPECT_EQ(r.status, Status::kStopped);
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(assembler.at_boundary());  // it stopped between frames
  EXPECT_EQ(input->refs(), 1U);          // nothing kept by the assembler
}

TEST(FrameAssemblerTest, OnFrameReturningFalseStopsOnAnAssembledFrame) {
  const Bytes frame = relay_frame({1}, 10, 0);
  const Bytes stream = concat({frame, frame});
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  int calls = 0;
  auto stop_at_first = [&calls](FrameView&&) {
    ++calls;
    return false;
  };
  const BlockRef first = block_of(Bytes(stream.begin(), stream.begin() + 10));
  const BlockRef second = block_of(Bytes(stream.begin() + 10, stream.end()));
  EXPECT_EQ(assembler.feed(first, 0, 10, stop_at_first).status, Status::kOk);
  EXPECT_EQ(assembler.feed(second, 0, static_cast<std::uint32_t>(stream.size() - 10), stop_at_first).status,
            Status::kStopped);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(assembler.at_boundary());
  EXPECT_EQ(acct.in_use(), 0);  // the dropped frame freed its assembly block
}

TEST(FrameAssemblerTest, ResetDropsAPartialFrame) {
  const Bytes frame = relay_frame({1, 2, 3}, 40, 0);
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  EXPECT_TRUE(assembler.at_boundary());

  const BlockRef part = block_of(Bytes(frame.begin(), frame.begin() + 30));
  EXPECT_EQ(assembler.feed(part, 0, 30, std::ref(got)).status, Status::kOk);
  EXPECT_FALSE(assembler.at_boundary());
  EXPECT_EQ(acct.in_use(), charged(30));
  assembler.reset();
  EXPECT_TRUE(assembler.at_boundary());
  EXPECT_EQ(acct.in_use(), 0);

  const BlockRef header_part = block_of(Bytes(frame.begin(), frame.begin() + 5));
  EXPECT_EQ(assembler.feed(header_part, 0, 5, std::ref(got)).status, Status::kOk);
  EXPECT_FALSE(assembler.at_boundary());
  assembler.reset();
  EXPECT_TRUE(assembler.at_boundary());

  // After a reset the next bytes are a fresh frame, not the rest of the old one.
  const BlockRef whole = block_of(frame);
  EXPECT_EQ(assembler.feed(whole, 0, static_cast<std::uint32_t>(frame.size()), std::ref(got)).status,
            Status::kOk);
  ASSERT_EQ(got.frames.size(), 1U);
  expect_frame(got.frames[0], frame, "after reset");
  EXPECT_EQ(got.frames[0].block.get(), whole.get());
}

TEST(FrameAssemblerTest, EmptyFeedChangesNothing) {
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  const BlockRef input = block_of(identity_frame());
  EXPECT_EQ(assembler.feed(input, 0, 0, std::ref(got)).status, Status::kOk);
  EXPECT_TRUE(got.frames.empty());
  EXPECT_TRUE(assembler.at_boundary());
}

TEST(FrameAssemblerTest, BytesInUseFollowsAssembledFramesLifetimes) {
  const Bytes a = relay_frame({1}, 100, 0);
  const Bytes b = relay_frame({2}, 200, 0);
  const Bytes stream = concat({a, b});
  TestAccounting acct;
  FrameAssembler assembler(&acct);
  Collector got;
  // Three buffers: the first cuts a, the second cuts b.
  const std::size_t cut1 = 50;
  const std::size_t cut2 = a.size() + 60;
  const BlockRef p1 = block_of(Bytes(stream.begin(), stream.begin() + cut1));
  const BlockRef p2 = block_of(Bytes(stream.begin() + cut1, stream.begin() + cut2));
  const BlockRef p3 = block_of(Bytes(stream.begin() + cut2, stream.end()));
  EXPECT_EQ(assembler.feed(p1, 0, cut1, std::ref(got)).status, Status::kOk);
  EXPECT_EQ(assembler.feed(p2, 0, static_cast<std::uint32_t>(cut2 - cut1), std::ref(got)).status,
            Status::kOk);
  EXPECT_EQ(acct.in_use(), charged(a.size()) + charged(60));  // a done, 60 bytes of b in assembly
  EXPECT_EQ(assembler.feed(p3, 0, static_cast<std::uint32_t>(stream.size() - cut2), std::ref(got)).status,
            Status::kOk);
  ASSERT_EQ(got.frames.size(), 2U);
  EXPECT_EQ(acct.copied_bytes, a.size() + b.size());
  got.frames.erase(got.frames.begin());
  EXPECT_EQ(acct.in_use(), charged(b.size()));
  got.frames.clear();
  EXPECT_EQ(acct.in_use(), 0);
}

// A frame larger than the direct threshold: what arrived in receive buffers is copied, the rest goes
// straight into the frame's block in as many direct receives as it takes, charged before each one.
TEST(FrameAssemblerTest, LargeFrameTakesTheRestByDirectReceive) {
  const Bytes frame = relay_frame({1, 2}, 100'000, 9);
  const Bytes next = identity_frame();
  TestAccounting acct;
  acct.direct_threshold = 4096;
  FrameAssembler assembler(&acct);
  Collector got;
  const BlockRef first = block_of(Bytes(frame.begin(), frame.begin() + 3000));
  ASSERT_EQ(assembler.feed(first, 0, 3000, std::ref(got)).status, Status::kOk);
  ASSERT_TRUE(assembler.wants_direct());
  EXPECT_EQ(assembler.partial_frame_size(), frame.size());
  EXPECT_EQ(acct.copied_bytes, 3000U);
  std::size_t filled = 3000;
  while (got.frames.empty()) {
    const std::span<std::uint8_t> space = assembler.direct_space(7000);
    ASSERT_FALSE(space.empty());
    ASSERT_LE(space.size(), 7000U);
    EXPECT_EQ(acct.in_use(), charged(filled + space.size()));         // charged before the kernel writes
    const std::size_t n = std::min<std::size_t>(space.size(), 5000);  // a short receive
    std::memcpy(space.data(), frame.data() + filled, n);
    filled += n;
    ASSERT_EQ(assembler.commit_direct(static_cast<std::uint32_t>(n), std::ref(got)).status, Status::kOk);
  }
  EXPECT_EQ(filled, frame.size());
  EXPECT_FALSE(assembler.wants_direct());
  EXPECT_TRUE(assembler.direct_space(7000).empty());
  EXPECT_TRUE(assembler.at_boundary());
  EXPECT_EQ(acct.copied_bytes, 3000U);  // nothing after the first buffer was copied
  ASSERT_EQ(got.frames.size(), 1U);
  expect_frame(got.frames[0], frame, "direct");
  EXPECT_EQ(acct.in_use(), charged(frame.size()));

  // The stream goes on through receive buffers after the frame.
  const BlockRef after = block_of(next);
  ASSERT_EQ(assembler.feed(after, 0, static_cast<std::uint32_t>(next.size()), std::ref(got)).status,
            Status::kOk);
  ASSERT_EQ(got.frames.size(), 2U);
  got.frames.clear();
  EXPECT_EQ(acct.in_use(), 0);
}

// Frames up to the threshold that span buffers are assembled by copying, never by direct receive.
TEST(FrameAssemblerTest, FramesUpToTheThresholdNeverWantDirectReceive) {
  const Bytes frame = relay_frame({1}, 4096 - 16, 1);  // exactly the threshold
  TestAccounting acct;
  acct.direct_threshold = 4096;
  FrameAssembler assembler(&acct);
  Collector got;
  const BlockRef first = block_of(Bytes(frame.begin(), frame.begin() + 10));
  ASSERT_EQ(assembler.feed(first, 0, 10, std::ref(got)).status, Status::kOk);
  EXPECT_FALSE(assembler.wants_direct());
  EXPECT_TRUE(assembler.direct_space(1U << 20).empty());
}

}  // namespace
}  // namespace ringhub
