// FrameAssembler: cuts one connection's received byte stream into relay frames. A frame that lies
// whole in one receive buffer is handed on in place; one that spans buffers gets a heap block of
// exactly its size. Bytes that arrived in receive buffers are copied into it (counted); a frame larger
// than a receive buffer takes the rest of its bytes by direct receive into the block (no copy).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"
#include "core/shared_block.hpp"

namespace ringhub {

// One complete client frame. `block` holds the whole frame (header first) contiguously from `offset`;
// frames with no payload (IDENTITY, LIST) carry no block.
struct FrameView {
  protocol::FrameHeader header;
  BlockRef block;
  std::uint32_t offset = 0;
  bool own_block = false;  // the block was made for this frame (assembled), not a receive buffer

  std::uint8_t* bytes() const { return block.data() + offset; }
  std::uint32_t size() const { return static_cast<std::uint32_t>(protocol::kHeaderSize) + header.length; }
};

struct FeedResult {
  enum class Status : std::uint8_t { kOk, kStopped, kProtocolError, kNoMemory };
  Status status = Status::kOk;
  protocol::ErrorCode error{};  // with kProtocolError
};

// Where the assembler reports what it costs; the shard owns these figures.
struct AssemblyAccounting {
  std::uint64_t copied_bytes = 0;   // bytes copied from receive buffers into assembly blocks
  MemoryAccount* memory = nullptr;  // charged for assembly blocks as their bytes arrive
  // Frames larger than this many bytes (header included) take their payload by direct receive
  // (0: never). The shard sets its receive-buffer size: a frame that size never lies whole in one.
  std::uint32_t direct_threshold = 0;
};

// Contract: owned by one connection on one shard; fed in stream order.
class FrameAssembler {
 public:
  explicit FrameAssembler(AssemblyAccounting* accounting) : accounting_(accounting) {}

  // Feeds bytes [offset, offset + length) of `block`. Calls `on_frame(FrameView&&)` for each complete
  // frame; if it returns false, feeding stops (kStopped). Stops at the first malformed header.
  template <typename OnFrame>
  FeedResult feed(const BlockRef& block, std::uint32_t offset, std::uint32_t length, OnFrame&& on_frame);

  // Where a direct receive should put the frame's next bytes: the unfilled rest of a large frame's
  // block, at most `max_bytes` of it, charged to the memory account before the kernel writes it.
  // Empty when no large frame is being assembled.
  std::span<std::uint8_t> direct_space(std::uint32_t max_bytes);
  // `n` bytes arrived by direct receive into direct_space(); calls on_frame when the frame is whole.
  template <typename OnFrame>
  FeedResult commit_direct(std::uint32_t n, OnFrame&& on_frame);

  // True when no partial frame is held (a clean frame boundary).
  bool at_boundary() const { return header_filled_ == 0 && !assembly_; }
  // True while a frame larger than the direct threshold is being assembled.
  bool wants_direct() const {
    return assembly_ && accounting_->direct_threshold != 0 &&
           frame_size(pending_) > accounting_->direct_threshold;
  }
  // The block of the frame being assembled (empty at a boundary). A direct receive in flight holds a
  // reference to it, so a reset cannot free memory the kernel is still writing.
  const BlockRef& partial_block() const { return assembly_; }
  // Bytes of the frame being assembled (0 at a boundary): the shard's measure of a "large" sender.
  std::uint32_t partial_frame_size() const { return assembly_ ? frame_size(pending_) : 0; }
  // Bytes of that frame received so far (header included; 0 at a boundary).
  std::uint32_t partial_frame_filled() const { return assembly_ ? assembly_filled_ : 0; }
  void reset();

 private:
  static std::uint32_t frame_size(const protocol::FrameHeader& header) {
    return static_cast<std::uint32_t>(protocol::kHeaderSize) + header.length;
  }
  std::optional<FrameView> take_if_complete();
  // Allocates the assembly block for a frame whose header (in header_) is whole but whose payload
  // is not; copies the header in. False if memory is exhausted.
  bool begin_payload(const protocol::FrameHeader& header);
  std::uint32_t copy_into_assembly(const std::uint8_t* p, std::uint32_t available);

  AssemblyAccounting* accounting_;
  std::uint8_t header_[protocol::kHeaderSize] = {};
  std::uint8_t header_filled_ = 0;
  BlockRef assembly_;  // the frame being assembled, header included
  std::uint32_t assembly_filled_ = 0;
  protocol::FrameHeader pending_{};  // header of the frame in assembly_
};

template <typename OnFrame>
FeedResult FrameAssembler::feed(const BlockRef& block, std::uint32_t offset, std::uint32_t length,
                                OnFrame&& on_frame) {
  using protocol::kHeaderSize;
  const std::uint8_t* base = block.data();
  std::uint32_t pos = offset;
  const std::uint32_t end = offset + length;
  while (pos < end) {
    const std::uint32_t available = end - pos;
    std::optional<FrameView> frame;
    if (assembly_) {  // the payload of a frame that spans buffers
      pos += copy_into_assembly(base + pos, available);
      frame = take_if_complete();
    } else if (header_filled_ == 0 && available >= kHeaderSize) {
      // Fast path: the header is whole in this buffer, and the frame often is too (zero copy).
      const auto header =
          codec::decode_header(std::span<const std::uint8_t, kHeaderSize>(base + pos, kHeaderSize));
      if (const auto error = codec::validate_client_header(header)) {
        return {FeedResult::Status::kProtocolError, *error};
      }
      if (kHeaderSize + header.length <= available) {
        frame.emplace(FrameView{header, header.length == 0 ? BlockRef() : block, pos});
        pos += static_cast<std::uint32_t>(kHeaderSize) + header.length;
      } else {
        std::memcpy(header_, base + pos, kHeaderSize);
        pos += kHeaderSize;
        if (!begin_payload(header)) {
          return {FeedResult::Status::kNoMemory, {}};
        }
      }
    } else {  // a header split across buffers
      const std::uint32_t take = std::min<std::uint32_t>(available, kHeaderSize - header_filled_);
      std::memcpy(header_ + header_filled_, base + pos, take);
      header_filled_ = static_cast<std::uint8_t>(header_filled_ + take);
      pos += take;
      if (header_filled_ < kHeaderSize) {
        continue;
      }
      header_filled_ = 0;
      const auto header =
          codec::decode_header(std::span<const std::uint8_t, kHeaderSize>(header_, kHeaderSize));
      if (const auto error = codec::validate_client_header(header)) {
        return {FeedResult::Status::kProtocolError, *error};
      }
      if (header.length == 0) {
        frame.emplace(FrameView{header, BlockRef(), 0});
      } else if (!begin_payload(header)) {
        return {FeedResult::Status::kNoMemory, {}};
      }
    }
    if (frame && !on_frame(std::move(*frame))) {
      return {FeedResult::Status::kStopped, {}};
    }
  }
  return {};
}

template <typename OnFrame>
FeedResult FrameAssembler::commit_direct(std::uint32_t n, OnFrame&& on_frame) {
  assembly_filled_ += n;
  std::optional<FrameView> frame = take_if_complete();
  if (frame && !on_frame(std::move(*frame))) {
    return {FeedResult::Status::kStopped, {}};
  }
  return {};
}

}  // namespace ringhub
