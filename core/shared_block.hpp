// SharedBlock and BlockRef: a chunk of bytes shared by several outbound queues, freed (or handed
// back to its pool) when the last reference goes. This is the zero-copy fan-out's currency.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "core/memory_account.hpp"

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
  // Takes `other`'s reference into this empty one: no old reference to drop, so the store needs no
  // load of what was here (a queue's ring slot past its tail, often out of cache).
  void take_into_empty(BlockRef&& other) {
    assert(block_ == nullptr);
    block_ = std::exchange(other.block_, nullptr);
  }
  SharedBlock* get() const { return block_; }
  SharedBlock* operator->() const { return block_; }
  explicit operator bool() const { return block_ != nullptr; }
  std::uint8_t* data() const { return block_->data(); }

 private:
  SharedBlock* block_ = nullptr;
};

// The unit large blocks are mapped and charged in: 4 KiB, the smallest page of the platforms we run on.
inline constexpr std::size_t kPageBytes = 4096;

// Where the memory of large heap blocks comes from. The hub installs one at start-up
// (transport/large_block_memory.hpp) so that a freed large block goes back to the system, or to a
// bounded cache, rather than to a malloc arena that keeps it resident. Without one: malloc.
struct LargeBlockSource {
  std::size_t min_bytes = 0;  // allocations (header included) at least this large use the source
  // What an allocation of `bytes` really holds: its size class (what a full block is charged).
  std::size_t (*size_class)(std::size_t bytes) = nullptr;
  // Returns memory of size_class(bytes) bytes, or nullptr when the system has none.
  void* (*allocate)(std::size_t bytes) = nullptr;
  void (*deallocate)(void* memory, std::size_t granted) = nullptr;
};

// A heap block: header and bytes in one allocation, freed on last release. Every frame that outlives
// its receive completion lives in one (shared by all its receivers), and so does every reply.
class HeapBlock {
 public:
  // What a block costs beyond its bytes: the header before them (and malloc's own, see
  // malloc_footprint).
  static constexpr std::size_t kHeaderBytes = 48;

  // Returns a reference to a new block of `size` bytes, or an empty ref if memory is exhausted.
  // `account` (may be null) is charged what the block costs while it lives: all of it at once, or,
  // with `charge_bytes` below `size`, only the header and that many bytes until charge_up_to raises
  // it (a frame received straight into its block is charged as its bytes arrive).
  // `owner` becomes SharedBlock::owner, a tag for whoever needs to recognise the block later.
  static BlockRef create(std::uint32_t size, MemoryAccount* account = nullptr,
                         std::uint32_t charge_bytes = UINT32_MAX, void* owner = nullptr);
  // Raises the charge of `block` to cover its first `bytes` bytes (never lowers it).
  static void charge_up_to(SharedBlock& block, std::uint32_t bytes);
  // The charge of a block of `size` bytes fully charged.
  static std::size_t footprint(std::uint32_t size);

  // Start-up only, before any block exists; `source` must outlive every block (nullptr: malloc).
  static void set_large_block_source(const LargeBlockSource* source);
  // Bytes of freed small blocks that every thread's cache keeps for reuse now (uncharged, at most
  // kSmallBlockCacheBytes a thread). Any thread may ask.
  static std::uint64_t small_block_cache_bytes();
  static constexpr std::size_t kSmallBlockCacheBytes = 256U << 10;

 private:
  static void release(SharedBlock* block);
};

}  // namespace ringhub
