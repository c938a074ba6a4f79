// HeapBlock: one malloc holding the SharedBlock header followed by its bytes.
#include "core/shared_block.hpp"

#include <new>

namespace ringhub {

namespace {
struct HeapBlockHeader {
  SharedBlock block;
  std::uint64_t* bytes_in_use;
};
constexpr std::size_t kHeaderBytes = (sizeof(HeapBlockHeader) + 15) & ~std::size_t{15};
}  // namespace

BlockRef HeapBlock::create(std::uint32_t size, std::uint64_t* bytes_in_use) {
  void* memory = std::malloc(kHeaderBytes + size);
  if (memory == nullptr) {
    return {};
  }
  auto* bytes = static_cast<std::uint8_t*>(memory) + kHeaderBytes;
  auto* header = new (memory) HeapBlockHeader{{bytes, size, &HeapBlock::release, nullptr}, bytes_in_use};
  if (bytes_in_use != nullptr) {
    *bytes_in_use += size;
  }
  return BlockRef(&header->block);
}

void HeapBlock::release(SharedBlock* block) {
  auto* header = reinterpret_cast<HeapBlockHeader*>(block);
  if (header->bytes_in_use != nullptr) {
    *header->bytes_in_use -= block->capacity();
  }
  header->~HeapBlockHeader();
  std::free(header);
}

}  // namespace ringhub
