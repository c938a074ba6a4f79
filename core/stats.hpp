// Hub counters. Each shard owns one ShardCounters and is its only writer; any thread may read a
// snapshot (relaxed atomics: figures, not synchronisation). HubStats is the sum over shards.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "core/protocol.hpp"

namespace ringhub {

// Error codes 1..8 index this array; slot 0 is unused.
inline constexpr std::size_t kErrorCodeSlots = 9;

struct HubStats {
  std::uint64_t connections = 0;           // relay connections open now
  std::uint64_t accepted = 0;              // connections accepted since start
  std::uint64_t frames_in = 0;             // complete client frames parsed
  std::uint64_t frames_out = 0;            // frames queued to clients (replies, deliveries, errors)
  std::uint64_t bytes_in = 0;              // bytes received from clients
  std::uint64_t bytes_out = 0;             // bytes written to client sockets
  std::uint64_t relays = 0;                // RELAY frames accepted
  std::uint64_t deliveries = 0;            // DELIVER frames queued
  std::uint64_t skipped_receivers = 0;     // unknown, departed, duplicate or self receivers
  std::uint64_t slow_consumer_closes = 0;  // connections closed with ERROR 6
  std::uint64_t server_full_rejects = 0;   // connections refused with ERROR 7
  // User-space copies, by reason. A frame's body is copied at most once whatever its fan-out:
  std::uint64_t copied_assembly_bytes = 0;    // frames spanning receive buffers, copied into their block
  std::uint64_t copied_out_bytes = 0;         // whole frames copied out of a receive buffer, once each
  std::uint64_t copied_reply_bytes = 0;       // replies and error words the hub composed
  std::uint64_t batched_bytes = 0;            // small deliveries copied into send batches, per receiver
  std::uint64_t outbound_queued_bytes = 0;    // bytes waiting in outbound queues now
  std::uint64_t buffer_bytes_in_use = 0;      // receive-pool bytes out of the ring now
  std::uint64_t memory_in_use = 0;            // bytes charged to the memory budget now (filled by the hub)
  std::uint64_t memory_budget = 0;            // --max-memory (filled by the hub)
  std::uint64_t memory_reserved = 0;          // rest of large frames under way, not yet charged (hub)
  std::uint64_t read_paused_connections = 0;  // connections whose input waits for memory to free
  std::uint64_t budget_pauses = 0;            // times a connection's reading was paused for memory
  std::uint64_t idle_closes = 0;              // connections closed by the idle timeout
  std::uint64_t frame_timeouts = 0;           // connections closed for a frame left unfinished
  std::uint64_t cq_overflows = 0;             // completion-queue overflows seen (slow path, no loss)
  std::uint64_t line_connections = 0;         // line-protocol connections open now
  std::uint64_t line_pending = 0;             // line messages forwarded and not yet answered
  std::uint64_t line_messages_in = 0;         // `message X` lines received
  std::uint64_t line_forwards = 0;            // `message X` lines written to a receiver
  std::uint64_t line_reforwards = 0;          // messages forwarded again after their receiver left
  std::uint64_t line_oks_delivered = 0;       // `ok X` lines written to the origin
  std::uint64_t line_unmatched_oks = 0;       // `ok X` that matched nothing pending
  std::uint64_t line_protocol_errors = 0;     // unknown commands and over-long lines
  std::array<std::uint64_t, kErrorCodeSlots> protocol_errors{};  // ERROR frames sent, by code
};

// One shard's counters, written only by that shard's thread.
class alignas(64) ShardCounters {
 public:
  struct Cell {
    std::atomic<std::uint64_t> value{0};
    void add(std::uint64_t n) {
      value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void sub(std::uint64_t n) {
      value.store(value.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }
    void set(std::uint64_t n) { value.store(n, std::memory_order_relaxed); }
    std::uint64_t get() const { return value.load(std::memory_order_relaxed); }
  };

  Cell connections, accepted, frames_in, frames_out, bytes_in, bytes_out, relays, deliveries,
      skipped_receivers, slow_consumer_closes, server_full_rejects, copied_assembly_bytes, copied_out_bytes,
      copied_reply_bytes, batched_bytes, outbound_queued_bytes, buffer_bytes_in_use, read_paused_connections,
      budget_pauses, frame_timeouts, idle_closes, cq_overflows, line_connections, line_pending,
      line_messages_in, line_forwards, line_reforwards, line_oks_delivered, line_unmatched_oks,
      line_protocol_errors;
  std::array<Cell, kErrorCodeSlots> protocol_errors;

  void count_error(protocol::ErrorCode code) { protocol_errors[static_cast<std::size_t>(code)].add(1); }
  void add_to(HubStats& total) const;
};

inline void ShardCounters::add_to(HubStats& t) const {
  t.connections += connections.get();
  t.accepted += accepted.get();
  t.frames_in += frames_in.get();
  t.frames_out += frames_out.get();
  t.bytes_in += bytes_in.get();
  t.bytes_out += bytes_out.get();
  t.relays += relays.get();
  t.deliveries += deliveries.get();
  t.skipped_receivers += skipped_receivers.get();
  t.slow_consumer_closes += slow_consumer_closes.get();
  t.server_full_rejects += server_full_rejects.get();
  t.copied_assembly_bytes += copied_assembly_bytes.get();
  t.copied_out_bytes += copied_out_bytes.get();
  t.copied_reply_bytes += copied_reply_bytes.get();
  t.batched_bytes += batched_bytes.get();
  t.outbound_queued_bytes += outbound_queued_bytes.get();
  t.buffer_bytes_in_use += buffer_bytes_in_use.get();
  t.read_paused_connections += read_paused_connections.get();
  t.budget_pauses += budget_pauses.get();
  t.frame_timeouts += frame_timeouts.get();
  t.idle_closes += idle_closes.get();
  t.cq_overflows += cq_overflows.get();
  t.line_connections += line_connections.get();
  t.line_pending += line_pending.get();
  t.line_messages_in += line_messages_in.get();
  t.line_forwards += line_forwards.get();
  t.line_reforwards += line_reforwards.get();
  t.line_oks_delivered += line_oks_delivered.get();
  t.line_unmatched_oks += line_unmatched_oks.get();
  t.line_protocol_errors += line_protocol_errors.get();
  for (std::size_t i = 0; i < kErrorCodeSlots; ++i) {
    t.protocol_errors[i] += protocol_errors[i].get();
  }
}

}  // namespace ringhub
