// FrameAssembler: the slow path for frames that span receive buffers; see core/frame_assembler.hpp.
#include "core/frame_assembler.hpp"

namespace ringhub {

bool FrameAssembler::begin_payload(const protocol::FrameHeader& header) {
  const std::uint32_t size = static_cast<std::uint32_t>(protocol::kHeaderSize) + header.length;
  assembly_ = HeapBlock::create(size, &accounting_->bytes_in_use);
  if (!assembly_) {
    return false;
  }
  std::memcpy(assembly_.data(), header_, protocol::kHeaderSize);
  accounting_->copied_bytes += protocol::kHeaderSize;
  assembly_filled_ = protocol::kHeaderSize;
  pending_ = header;
  return true;
}

std::uint32_t FrameAssembler::copy_into_assembly(const std::uint8_t* p, std::uint32_t available) {
  const std::uint32_t wanted =
      static_cast<std::uint32_t>(protocol::kHeaderSize) + pending_.length - assembly_filled_;
  const std::uint32_t take = std::min(wanted, available);
  std::memcpy(assembly_.data() + assembly_filled_, p, take);
  assembly_filled_ += take;
  accounting_->copied_bytes += take;
  return take;
}

void FrameAssembler::reset() {
  header_filled_ = 0;
  assembly_.reset();
  assembly_filled_ = 0;
}

}  // namespace ringhub
