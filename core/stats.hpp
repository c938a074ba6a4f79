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

// The shapes a figure comes in: one number, or one per protocol error code.
using Count = std::uint64_t;
using CountsByErrorCode = std::array<std::uint64_t, kErrorCodeSlots>;

// Who writes a figure: each shard into its ShardCounters (summed on read), or the hub when it takes
// the snapshot (figures the shards do not hold, such as the memory budget).
enum class Filler { kShard, kHub };

enum class MetricType { kCounter, kGauge };

// Every figure the hub keeps, one row each: adding a metric is one row here. The rows make the HubStats
// fields, the shards' cells, their sum and the /metrics text (core/prometheus.cpp), in this order.
//   X(field, shape, filler, type, Prometheus family, labels, help)
// Consecutive rows with one family are its labelled samples; the first row's help is the family's. A
// family of "" is not exported (tests read the field). A CountsByErrorCode row's labels are the codes.
#define RINGHUB_STATS(X)                                                                                   \
  X(connections, Count, kShard, kGauge, "ringhub_connections", R"(protocol="relay")",                      \
    "Client connections open now, by protocol.")                                                           \
  X(line_connections, Count, kShard, kGauge, "ringhub_connections", R"(protocol="line")", "")              \
  X(closing_connections, Count, kShard, kGauge, "ringhub_closing_connections", "",                         \
    "Connections no longer served but still held: refused, half-closed, idle or after an ERROR, "          \
    "written to until their close.")                                                                       \
  X(line_pending, Count, kShard, kGauge, "ringhub_line_pending_messages", "",                              \
    "Line-protocol messages forwarded and not yet acknowledged.")                                          \
  X(line_held_back, Count, kShard, kGauge, "ringhub_line_held_back_messages", "",                          \
    "Line-protocol messages read but held back: sent past their connection's pending allowance while "     \
    "hub memory is past half the budget.")                                                                 \
  X(buffer_bytes_in_use, Count, kShard, kGauge, "ringhub_buffer_bytes_in_use", "",                         \
    "Receive-buffer bytes out of the ring now.")                                                           \
  X(memory_budget, Count, kHub, kGauge, "ringhub_memory_budget_bytes", "",                                 \
    "The memory budget (--max-memory) for what the hub holds for clients.")                                \
  X(memory_in_use, Count, kHub, kGauge, "ringhub_memory_in_use_bytes", "",                                 \
    "Bytes held for clients now, as allocated: frames, assemblies, replies, batches, queues.")             \
  X(memory_reserved, Count, kHub, kGauge, "ringhub_memory_reserved_bytes", "",                             \
    "Bytes reserved for the rest of large frames being received, not yet charged.")                        \
  X(memory_block_cache, Count, kHub, kGauge, "ringhub_memory_block_cache_bytes", "",                       \
    "Freed large blocks kept mapped for reuse (at most 32 MiB), outside the budget.")                      \
  X(memory_small_block_cache, Count, kHub, kGauge, "ringhub_memory_small_block_cache_bytes", "",           \
    "Freed small blocks each thread keeps for reuse (at most 256 KiB a thread), outside the budget.")      \
  X(read_paused_connections, Count, kShard, kGauge, "ringhub_read_paused_connections", "",                 \
    "Connections whose input is not read until memory frees (backpressure).")                              \
  X(outbound_queued_bytes, Count, kShard, kGauge, "ringhub_outbound_queued_bytes", "",                     \
    "Bytes waiting in outbound queues now.")                                                               \
  X(frames_in, Count, kShard, kCounter, "ringhub_frames_in_total", "",                                     \
    "Complete client frames parsed (relay frames and lines).")                                             \
  X(frames_out, Count, kShard, kCounter, "ringhub_frames_out_total", "",                                   \
    "Frames queued to clients (replies, deliveries, errors; lines for line clients).")                     \
  X(bytes_in, Count, kShard, kCounter, "ringhub_bytes_in_total", "", "Bytes received from clients.")       \
  X(bytes_out, Count, kShard, kCounter, "ringhub_bytes_out_total", "", "Bytes written to client sockets.") \
  X(relays, Count, kShard, kCounter, "ringhub_relays_total", "", "RELAY frames accepted.")                 \
  X(deliveries, Count, kShard, kCounter, "ringhub_deliveries_total", "", "DELIVER frames queued.")         \
  X(skipped_receivers, Count, kShard, kCounter, "ringhub_skipped_receivers_total", "",                     \
    "Unknown, departed, duplicate or self receivers skipped.")                                             \
  X(protocol_errors, CountsByErrorCode, kShard, kCounter, "ringhub_protocol_errors_total", "",             \
    "ERROR frames sent, by code.")                                                                         \
  X(slow_consumer_closes, Count, kShard, kCounter, "ringhub_slow_consumer_closes_total", "",               \
    "Connections closed because their outbound queue passed its limit (ERROR 6).")                         \
  X(server_full_rejects, Count, kShard, kCounter, "ringhub_server_full_rejects_total", "",                 \
    "Connections refused at --max-connections (ERROR 7).")                                                 \
  X(accepted, Count, kShard, kCounter, "ringhub_accepted_connections_total", "",                           \
    "Connections accepted since start.")                                                                   \
  X(copied_assembly_bytes, Count, kShard, kCounter, "ringhub_copied_bytes_total", R"(reason="assembly")",  \
    "Bytes copied in user space, by reason: assembly (frames spanning receive buffers), copy_out (a "      \
    "frame copied once out of its receive buffer), reply (hub-composed replies), batch (small "            \
    "deliveries copied per receiver, into a send batch or the queue of a receiver that is behind).")       \
  X(copied_out_bytes, Count, kShard, kCounter, "ringhub_copied_bytes_total", R"(reason="copy_out")", "")   \
  X(copied_reply_bytes, Count, kShard, kCounter, "ringhub_copied_bytes_total", R"(reason="reply")", "")    \
  X(batched_bytes, Count, kShard, kCounter, "ringhub_copied_bytes_total", R"(reason="batch")", "")         \
  X(lent_frames, Count, kShard, kCounter, "ringhub_lent_frames_total", "",                                 \
    "RELAY frames sent straight from their receive buffer: every receiver batched them at once, no "       \
    "copy_out.")                                                                                           \
  X(budget_pauses, Count, kShard, kCounter, "ringhub_budget_pauses_total", "",                             \
    "Times a connection's reading was paused because the memory budget was reached.")                      \
  X(idle_closes, Count, kShard, kCounter, "ringhub_idle_closes_total", "",                                 \
    "Connections closed after sending nothing for their protocol's idle timeout.")                         \
  X(frame_timeouts, Count, kShard, kCounter, "ringhub_frame_timeouts_total", "",                           \
    "Connections closed because a frame stayed unfinished past --frame-timeout (ERROR 8).")                \
  X(cq_overflows, Count, kShard, kCounter, "ringhub_cq_overflows_total", "",                               \
    "io_uring completion-queue overflows seen (slow path, no loss).")                                      \
  X(recv_buffer_waits, Count, kShard, kCounter, "ringhub_recv_buffer_waits_total", "",                     \
    "Receives that stopped because every receive buffer was in use (ENOBUFS); each waits for one back.")   \
  X(line_forwards, Count, kShard, kCounter, "ringhub_line_forwards_total", "",                             \
    "Line-protocol messages forwarded.")                                                                   \
  X(line_reforwards, Count, kShard, kCounter, "ringhub_line_reforwards_total", "",                         \
    "Line-protocol messages forwarded again after a receiver left.")                                       \
  X(line_unmatched_oks, Count, kShard, kCounter, "ringhub_line_unmatched_oks_total", "",                   \
    "Line-protocol acknowledgements that matched no pending message.")                                     \
  X(line_protocol_errors, Count, kShard, kCounter, "ringhub_line_protocol_errors_total", "",               \
    "Malformed line-protocol input refused.")                                                              \
  X(line_messages_in, Count, kShard, kCounter, "ringhub_line_messages_total", "",                          \
    "Line-protocol `message X` lines received.")                                                           \
  X(line_oks_delivered, Count, kShard, kCounter, "ringhub_line_oks_delivered_total", "",                   \
    "Line-protocol `ok X` lines queued to the connection that sent `message X` while it was known.")

// A snapshot of every figure, summed over the shards (plus what the hub fills in).
struct HubStats {
#define RINGHUB_STATS_FIELD(field, shape, ...) shape field{};
  RINGHUB_STATS(RINGHUB_STATS_FIELD)
#undef RINGHUB_STATS_FIELD
};

// One relaxed atomic figure, written only by its shard's thread.
struct CounterCell {
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

// A row the hub fills: shards have no cell for it.
struct HubFilled {};

// The shard-side storage of a row, by filler and shape.
template <Filler filler, class Shape>
struct ShardCellOf {
  using type = HubFilled;
};
template <>
struct ShardCellOf<Filler::kShard, Count> {
  using type = CounterCell;
};
template <>
struct ShardCellOf<Filler::kShard, CountsByErrorCode> {
  using type = std::array<CounterCell, kErrorCodeSlots>;
};

inline void accumulate(Count& total, const CounterCell& cell) {
  total += cell.get();
}
inline void accumulate(CountsByErrorCode& total, const std::array<CounterCell, kErrorCodeSlots>& cells) {
  for (std::size_t i = 0; i < kErrorCodeSlots; ++i) {
    total[i] += cells[i].get();
  }
}
inline void accumulate(Count& /*filled by the hub*/, const HubFilled& /*no cell*/) {}

// One shard's counters, written only by that shard's thread: a cell per shard-filled row.
class alignas(64) ShardCounters {
 public:
#define RINGHUB_STATS_CELL(field, shape, filler, ...) ShardCellOf<Filler::filler, shape>::type field;
  RINGHUB_STATS(RINGHUB_STATS_CELL)
#undef RINGHUB_STATS_CELL

  void count_error(protocol::ErrorCode code) {
    protocol_errors[static_cast<std::size_t>(code)].add(1);
  }

  void add_to(HubStats& total) const {
#define RINGHUB_STATS_ADD(field, ...) accumulate(total.field, field);
    RINGHUB_STATS(RINGHUB_STATS_ADD)
#undef RINGHUB_STATS_ADD
  }
};

}  // namespace ringhub
