// Fuzz target for core/frame_assembler: a client's byte stream fed whole and cut at fuzzer-chosen points
// (optionally taking large frames by direct receive, as a shard does) must give the same frames, the same
// documented error, and frames that are exactly the input's bytes and within the protocol's limits.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "core/frame_assembler.hpp"
#include "core/frame_codec.hpp"
#include "core/memory_account.hpp"
#include "core/protocol.hpp"
#include "core/shared_block.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace ringhub::fuzz {
namespace {

using protocol::kHeaderSize;
using Bytes = std::vector<std::uint8_t>;

// Mode bits (FuzzInput::mode).
constexpr std::uint8_t kModeDirect = 1;  // the split feed takes large frames by direct receive
constexpr std::uint8_t kModeOffset = 2;  // the whole feed starts at a nonzero offset in its block
// Frames above this many bytes take the direct path in kModeDirect: small, so fuzz inputs reach it.
constexpr std::uint32_t kFuzzDirectThreshold = 32;
// Bytes before the stream in the whole feed's block with kModeOffset (a receive buffer's offset).
constexpr std::uint32_t kWholeOffset = 13;

// What one feeding produced: every frame's bytes (header included) and how it ended.
struct Outcome {
  std::vector<Bytes> frames;
  std::optional<protocol::ErrorCode> error;
  bool at_boundary = true;
  std::uint32_t partial_frame_size = 0;
  std::uint64_t copied_bytes = 0;
};

// Records one frame after checking what the assembler promises about it.
bool record(Outcome& out, FrameView&& frame) {
  require(!codec::validate_client_header(frame.header), "a handed-on frame has a valid header");
  require(frame.size() == kHeaderSize + frame.header.length, "frame size is header plus length");
  require((frame.header.length == 0) == !frame.block, "only header-only frames carry no block");
  if (frame.header.type == protocol::FrameType::kRelay) {
    require(frame.header.count >= 1, "a RELAY names at least one receiver");
    require(frame.header.length - protocol::kIdSize * frame.header.count <= protocol::kMaxBodySize,
            "body within 1 MiB");
  }
  Bytes bytes(kHeaderSize);
  codec::encode_header(std::span<std::uint8_t, kHeaderSize>(bytes.data(), kHeaderSize), frame.header);
  if (frame.block) {
    require(std::memcmp(frame.bytes(), bytes.data(), kHeaderSize) == 0, "frame bytes start with its header");
    bytes.assign(frame.bytes(), frame.bytes() + frame.size());
  }
  out.frames.push_back(std::move(bytes));
  return true;
}

void finish(Outcome& out, const FrameAssembler& assembler, FeedResult result,
            const AssemblyAccounting& acct) {
  require(result.status == FeedResult::Status::kOk || result.status == FeedResult::Status::kProtocolError,
          "feed ends ok or with a protocol error (memory is unbounded, on_frame never stops)");
  if (result.status == FeedResult::Status::kProtocolError) {
    out.error = result.error;
  }
  out.at_boundary = assembler.at_boundary();
  out.partial_frame_size = assembler.partial_frame_size();
  out.copied_bytes = acct.copied_bytes;
}

Outcome feed_whole(const FuzzInput& input) {
  MemoryAccount account;
  AssemblyAccounting acct{0, &account, 0};
  Outcome out;
  {
    FrameAssembler assembler(&acct);
    const std::uint32_t offset = (input.mode & kModeOffset) != 0 ? kWholeOffset : 0;
    const auto size = static_cast<std::uint32_t>(input.stream.size());
    BlockRef block = HeapBlock::create(offset + size);
    std::memset(block.data(), 0xEE, offset);
    if (size != 0) {
      std::memcpy(block.data() + offset, input.stream.data(), size);
    }
    const FeedResult result =
        assembler.feed(block, offset, size, [&](FrameView&& frame) { return record(out, std::move(frame)); });
    finish(out, assembler, result, acct);
  }
  require(account.bytes() == 0, "every assembly block's charge is released with it");
  return out;
}

// Feeds pieces in order; with kModeDirect a frame over the threshold takes its bytes by direct receive.
Outcome feed_split(const FuzzInput& input) {
  MemoryAccount account;
  const bool direct = (input.mode & kModeDirect) != 0;
  AssemblyAccounting acct{0, &account, direct ? kFuzzDirectThreshold : 0};
  Outcome out;
  {
    FrameAssembler assembler(&acct);
    const auto on_frame = [&](FrameView&& frame) { return record(out, std::move(frame)); };
    FeedResult result;
    for (const Bytes& piece : split_pieces(input)) {
      const auto size = static_cast<std::uint32_t>(piece.size());
      BlockRef block = HeapBlock::create(size);
      if (size != 0) {
        std::memcpy(block.data(), piece.data(), size);
      }
      std::uint32_t used = 0;
      while (result.status == FeedResult::Status::kOk && used < size) {
        const std::span<std::uint8_t> space = assembler.direct_space(size - used);
        if (space.empty()) {
          result = assembler.feed(block, used, size - used, on_frame);
          used = size;
          continue;
        }
        require(direct && assembler.wants_direct(), "direct space only while a large frame wants it");
        std::memcpy(space.data(), block.data() + used, space.size());
        used += static_cast<std::uint32_t>(space.size());
        result = assembler.commit_direct(static_cast<std::uint32_t>(space.size()), on_frame);
      }
      if (result.status != FeedResult::Status::kOk) {
        break;  // the hub stops reading a connection at its first malformed header
      }
    }
    finish(out, assembler, result, acct);
  }
  require(account.bytes() == 0, "every assembly block's charge is released with it");
  return out;
}

// The frames are the stream's bytes in order; an error is what the next header gives by the documented
// rules; without an error the rest is one incomplete frame.
void check_against_stream(const Outcome& out, std::span<const std::uint8_t> stream) {
  const std::size_t pos = match_stream_prefix(out.frames, stream);
  const std::size_t rest = stream.size() - pos;
  if (out.error) {
    const auto header = header_at(stream, pos);
    require(codec::validate_client_header(header) == out.error, "the error is the header's documented code");
    const auto code = static_cast<unsigned>(*out.error);
    require(code >= 1 && code <= 5, "a header error is one of codes 1 to 5");
    return;
  }
  require(out.at_boundary == (rest == 0), "at a boundary exactly when no bytes are left over");
  if (rest >= kHeaderSize) {
    const auto header = header_at(stream, pos);
    require(!codec::validate_client_header(header), "a held partial frame has a valid header");
    require(kHeaderSize + header.length > rest, "a held frame is incomplete");
    require(out.partial_frame_size == kHeaderSize + header.length,
            "partial frame size is the announced size");
  } else {
    require(out.partial_frame_size == 0, "a partial header holds no frame block");
  }
  require(out.copied_bytes <= stream.size(), "no byte is copied twice");
}

// Every invariant of this target on one input.
void check_assembler(const FuzzInput& input) {
  const Outcome whole = feed_whole(input);
  const Outcome split = feed_split(input);
  check_against_stream(whole, input.stream);
  check_against_stream(split, input.stream);
  require(whole.frames == split.frames, "split feeding gives the frames of whole feeding");
  require(whole.error == split.error, "split feeding gives the error of whole feeding");
  require(whole.at_boundary == split.at_boundary, "split feeding ends at the same boundary");
}

}  // namespace
}  // namespace ringhub::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ringhub::fuzz::check_input(data, size, ringhub::fuzz::check_assembler);
}
