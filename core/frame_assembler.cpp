// FrameAssembler: the slow path for frames that span receive buffers; see core/frame_assembler.hpp.
#include "core/frame_assembler.hpp"

namespace ringhub {

bool FrameAssembler::begin_payload(const protocol::FrameHeader& header) {
  // Charged as bytes arrive, not when the header announces them: a client that announces 1 MiB and
  // sends one byte costs the hub one byte's worth (plus the block header).
  assembly_ = HeapBlock::create(frame_size(header), accounting_->memory, protocol::kHeaderSize);
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
  const std::uint32_t wanted = frame_size(pending_) - assembly_filled_;
  const std::uint32_t take = std::min(wanted, available);
  HeapBlock::charge_up_to(*assembly_.get(), assembly_filled_ + take);
  std::memcpy(assembly_.data() + assembly_filled_, p, take);
  assembly_filled_ += take;
  accounting_->copied_bytes += take;
  return take;
}

std::span<std::uint8_t> FrameAssembler::direct_space(std::uint32_t max_bytes) {
  if (!wants_direct()) {
    return {};
  }
  const std::uint32_t take = std::min(frame_size(pending_) - assembly_filled_, max_bytes);
  HeapBlock::charge_up_to(*assembly_.get(), assembly_filled_ + take);
  return {assembly_.data() + assembly_filled_, take};
}

std::optional<FrameView> FrameAssembler::take_if_complete() {
  if (assembly_filled_ != frame_size(pending_)) {
    return std::nullopt;
  }
  assembly_filled_ = 0;
  return FrameView{pending_, std::move(assembly_), 0, true};
}

void FrameAssembler::reset() {
  header_filled_ = 0;
  assembly_.reset();
  assembly_filled_ = 0;
}

}  // namespace ringhub
