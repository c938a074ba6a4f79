// HubShared: what every shard of one hub reads, and the few atomics they share (ids, live connections,
// the memory figures behind the budget). Owned by the Hub; outlives every shard.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/id_directory.hpp"
#include "core/keyed_hash.hpp"
#include "core/memory_account.hpp"
#include "core/protocol.hpp"
#include "core/stats.hpp"
#include "transport/hub_config.hpp"

namespace ringhub {

struct HubShared {
  HubShared(const HubConfig& c, unsigned shards, unsigned table, std::size_t directory_slots,
            const HashKey& x_key)
      : config(c),
        shard_count(shards),
        table_size(table),
        x_hash(x_key),
        budget(c.max_memory),
        directory(directory_slots),
        ring_fds(shards, -1),
        counters(shards) {}

  // Bytes charged by every shard now: the figure the budget is held against.
  std::int64_t memory_in_use() const {
    std::int64_t sum = 0;
    for (unsigned s = 0; s < shard_count; ++s) {
      sum += memory[s].bytes_published();
    }
    return sum;
  }
  // What the budget's gate sees: bytes charged plus the uncharged rest of every large frame under way.
  std::int64_t memory_committed() const {
    return memory_in_use() + frame_reservations.load(std::memory_order_relaxed);
  }

  const HubConfig config;
  const unsigned shard_count;
  const unsigned table_size;  // direct descriptors per shard ring
  // Hashes every client-chosen X of the line protocol: its owning shard and its bucket there. Its key
  // is the process's one secret hash key, drawn at start-up (transport/hash_key.hpp).
  const KeyedHash x_hash;
  const MemoryBudget budget;  // config.max_memory, resolved
  std::unique_ptr<MemoryAccount[]> memory = std::make_unique<MemoryAccount[]>(shard_count);  // per shard
  IdDirectory directory;
  std::vector<int> ring_fds;  // filled before any shard runs, read-only after
  std::vector<ShardCounters> counters;
  alignas(64) std::atomic<protocol::UserId> next_id{1};
  alignas(64) std::atomic<std::size_t> live_connections{0};
  alignas(64) std::atomic<unsigned> finished_shards{0};
  // Cross-shard messages posted and not yet handled: shards exit only when this is 0 too, so no
  // message is left in a ring nobody reaps.
  alignas(64) std::atomic<std::int64_t> messages_in_flight{0};
  // Bytes reserved for large frames under way and not yet charged (see MemoryGate::reserve_large_frame),
  // and how many such frames there are (a frame may be fully charged and still wait for its end).
  alignas(64) std::atomic<std::int64_t> frame_reservations{0};
  std::atomic<std::int64_t> large_frames_under_way{0};
  // Line-protocol connections per shard, read by every shard to pick a random receiver uniformly.
  std::unique_ptr<std::atomic<std::uint32_t>[]> line_counts =
      std::make_unique<std::atomic<std::uint32_t>[]>(shard_count);
};

}  // namespace ringhub
