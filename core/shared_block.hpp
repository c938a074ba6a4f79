// SharedBlock and BlockRef: a chunk of bytes shared by several outbound queues, freed (or handed
// back to its pool) when the last reference goes. This is the zero-copy fan-out's currency.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <utility>

namespace ringhub {

// Contract: every reference is taken and dropped on one thread, the shard that owns the block, so
// the count is a plain integer. Another shard uses a block only through a proxy block of its own
// whose release is a message back to the owner (see transport/cross_shard.hpp).
class SharedBlock {
 public:
  using ReleaseFn = void (*)(SharedBlock* block);

  SharedBlock() = default;
  SharedBlock(std::uint8_t* data, std::uint32_t capacity, ReleaseFn release, void* owner)
      : data_(data), capacity_(capacity), release_(release), owner_(owner) {}
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;

  std::uint8_t* data() const { return data_; }
  std::uint32_t capacity() const { return capacity_; }
  std::uint32_t refs() const { return refs_; }
  void* owner() const { return owner_; }
  ReleaseFn release_fn() const { return release_; }

  void add_ref() { ++refs_; }
  void drop_ref() {
    if (--refs_ == 0) {
      release_(this);  // may destroy *this
    }
  }

  // For pools that reuse one SharedBlock object for many lifetimes.
  void reset(std::uint8_t* data, std::uint32_t capacity) {
    data_ = data;
    capacity_ = capacity;
  }

 private:
  std::uint8_t* data_ = nullptr;
  std::uint32_t capacity_ = 0;
  std::uint32_t refs_ = 0;
  ReleaseFn release_ = nullptr;
  void* owner_ = nullptr;
};

// An owning reference to a SharedBlock (an intrusive_ptr without the atomics).
class BlockRef {
 public:
  BlockRef() = default;
  explicit BlockRef(SharedBlock* block) : block_(block) {
    if (block_ != nullptr) {
      block_->add_ref();
    }
  }
  BlockRef(const BlockRef& other) : BlockRef(other.block_) {}
  BlockRef(BlockRef&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
  BlockRef& operator=(BlockRef other) noexcept {
    std::swap(block_, other.block_);
    return *this;
  }
  ~BlockRef() { reset(); }

  void reset() {
    if (block_ != nullptr) {
      std::exchange(block_, nullptr)->drop_ref();
    }
  }
  SharedBlock* get() const { return block_; }
  SharedBlock* operator->() const { return block_; }
  explicit operator bool() const { return block_ != nullptr; }
  std::uint8_t* data() const { return block_->data(); }

 private:
  SharedBlock* block_ = nullptr;
};

// A heap block: header and bytes in one allocation, freed on last release. Used for assembled
// frames (bigger than a receive buffer) and for replies the hub composes.
class HeapBlock {
 public:
  // Returns a reference to a new block of `size` bytes, or an empty ref if memory is exhausted.
  // `bytes_in_use` (may be null) is raised by the block's size while it lives.
  static BlockRef create(std::uint32_t size, std::uint64_t* bytes_in_use = nullptr);
  // True for heap blocks: they pin no receive buffer, so a slow reader may hold them as long as it likes.
  static bool owns(const SharedBlock& block) { return block.release_fn() == &HeapBlock::release; }

 private:
  static void release(SharedBlock* block);
};

}  // namespace ringhub
