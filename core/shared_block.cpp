// HeapBlock: one malloc holding the SharedBlock header followed by its bytes, charged to a
// MemoryAccount for as long as it lives.
#include "core/shared_block.hpp"

#include <algorithm>
#include <new>

namespace ringhub {

namespace {
struct HeapBlockHeader {
  SharedBlock block;
  MemoryAccount* account;
  std::uint32_t charged;  // bytes charged to `account` now
  std::uint32_t granted;  // bytes the large-block source gave (0: the block came from malloc)
};
static_assert((sizeof(HeapBlockHeader) + 15) / 16 * 16 == HeapBlock::kHeaderBytes);

HeapBlockHeader& header_of(SharedBlock& block) {
  return *reinterpret_cast<HeapBlockHeader*>(&block);
}

const LargeBlockSource* large_source = nullptr;

bool uses_large_source(std::size_t bytes) {
  return large_source != nullptr && bytes >= large_source->min_bytes;
}

// What the first `bytes` bytes of a block cost: what malloc hands out, or the pages touched so far in
// a block from the large-block source, and all it holds once full.
std::size_t cost_of(const HeapBlockHeader& header, std::uint32_t bytes) {
  const std::size_t with_header = HeapBlock::kHeaderBytes + bytes;
  if (header.granted == 0) {
    return malloc_footprint(with_header);
  }
  if (bytes >= header.block.capacity()) {
    return header.granted;
  }
  // Pages no byte has reached yet are not resident: a block filled as its bytes arrive is charged by
  // the page.
  return std::min<std::size_t>((with_header + kPageBytes - 1) & ~(kPageBytes - 1), header.granted);
}
}  // namespace

void HeapBlock::set_large_block_source(const LargeBlockSource* source) {
  large_source = source;
}

std::size_t HeapBlock::footprint(std::uint32_t size) {
  const std::size_t with_header = kHeaderBytes + size;
  return uses_large_source(with_header) ? large_source->size_class(with_header)
                                        : malloc_footprint(with_header);
}

BlockRef HeapBlock::create(std::uint32_t size, MemoryAccount* account, std::uint32_t charge_bytes) {
  const std::size_t bytes_wanted = kHeaderBytes + size;
  const bool large = uses_large_source(bytes_wanted);
  const std::size_t granted = large ? large_source->size_class(bytes_wanted) : 0;
  void* memory = large ? large_source->allocate(bytes_wanted) : std::malloc(bytes_wanted);
  if (memory == nullptr) {
    return {};
  }
  auto* bytes = static_cast<std::uint8_t*>(memory) + kHeaderBytes;
  auto* header = new (memory) HeapBlockHeader{
      {bytes, size, &HeapBlock::release, nullptr}, account, 0, static_cast<std::uint32_t>(granted)};
  charge_up_to(header->block, std::min(size, charge_bytes));
  return BlockRef(&header->block);
}

void HeapBlock::charge_up_to(SharedBlock& block, std::uint32_t bytes) {
  HeapBlockHeader& header = header_of(block);
  const auto want = static_cast<std::uint32_t>(cost_of(header, std::min(bytes, block.capacity())));
  if (header.account != nullptr && want > header.charged) {
    header.account->charge(want - header.charged);
    header.charged = want;
  }
}

void HeapBlock::release(SharedBlock* block) {
  HeapBlockHeader& header = header_of(*block);
  if (header.account != nullptr) {
    header.account->release(header.charged);
  }
  const std::uint32_t granted = header.granted;
  header.~HeapBlockHeader();
  if (granted == 0) {
    std::free(&header);
  } else {
    large_source->deallocate(&header, granted);
  }
}

}  // namespace ringhub
