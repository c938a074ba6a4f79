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
  std::size_t charged;  // bytes charged to `account` now
};
static_assert((sizeof(HeapBlockHeader) + 15) / 16 * 16 == HeapBlock::kHeaderBytes);

HeapBlockHeader& header_of(SharedBlock& block) {
  return *reinterpret_cast<HeapBlockHeader*>(&block);
}
}  // namespace

BlockRef HeapBlock::create(std::uint32_t size, MemoryAccount* account, std::uint32_t charge_bytes) {
  void* memory = std::malloc(kHeaderBytes + size);
  if (memory == nullptr) {
    return {};
  }
  auto* bytes = static_cast<std::uint8_t*>(memory) + kHeaderBytes;
  auto* header = new (memory) HeapBlockHeader{{bytes, size, &HeapBlock::release, nullptr}, account, 0};
  charge_up_to(header->block, std::min(size, charge_bytes));
  return BlockRef(&header->block);
}

void HeapBlock::charge_up_to(SharedBlock& block, std::uint32_t bytes) {
  HeapBlockHeader& header = header_of(block);
  const std::size_t want = footprint(std::min(bytes, block.capacity()));
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
  header.~HeapBlockHeader();
  std::free(&header);
}

}  // namespace ringhub
