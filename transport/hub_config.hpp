// HubConfig: everything the hub is told at start-up, filled from flags by apps/ringhub_main.cpp
// and by tests. Each limit's default is named once, here, with why it has that value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/line_protocol.hpp"  // kDefaultMaxLineBytes

namespace ringhub {

// Per-connection outbound queue limit (the NATS slow-consumer policy): past it, ERROR 6 and close.
inline constexpr std::size_t kDefaultMaxOutboundBytes = 64U << 20;

// The product promise: 100k clients on one box. Shard count grows to fit the direct-descriptor tables.
inline constexpr std::size_t kDefaultMaxConnections = 100'000;

// Slots kept free in each shard's file table so a shard at capacity can still accept, send ERROR 7 and
// close; the rest is what one shard holds.
inline constexpr unsigned kRejectReserve = 64;
constexpr std::size_t shard_connection_capacity(unsigned table_size) {
  return table_size > kRejectReserve ? table_size - kRejectReserve : table_size / 2;
}
// What the hub plans one shard to hold, when it sizes shards and when it caps --max-connections: 15%
// of the table left as slack, as SO_REUSEPORT spreads connections by hash, not evenly, and refused
// clients hold a slot until they close.
inline constexpr double kTableFill = 0.85;
constexpr std::size_t shard_planned_connections(unsigned table_size) {
  return static_cast<std::size_t>(table_size * kTableFill);
}

// Receive buffers: 32 KiB holds any small or medium frame whole (zero copy), 512 per shard = 16 MiB.
// Unless --recv-buffers is given, a hub of many shards (a machine of many cores, or a low open-file
// limit) takes fewer per shard, down to kMinAutoRecvBufferCount, so its pools fit the memory budget's
// reserve: the default budget then still starts on any machine.
inline constexpr std::uint32_t kDefaultRecvBufferSize = 32U << 10;
inline constexpr std::uint32_t kDefaultRecvBufferCount = 512;
inline constexpr std::uint32_t kMinAutoRecvBufferCount = 16;

// Outbound frames up to this many bytes are copied into one contiguous send batch instead of taking an
// iovec each: below it a memcpy is cheaper than the kernel's per-iovec work, and one sendmsg carries
// hundreds of small deliveries. Measured in docs/perf/README.md ("Tuning"). 0 turns batching off.
inline constexpr std::uint32_t kDefaultBatchThreshold = 4096;
// The largest: what one send batch block holds (transport/send_contexts.hpp, 64 KiB less its
// allocation overhead). A larger frame could never be batched, and a receiver's queue would stall
// behind it.
inline constexpr std::uint32_t kMaxBatchThreshold = (64U << 10) - 64;

// After a round that handled completions, a hub thread may keep looking for more this long before it
// blocks (Seastar's idle poll), while its sleeps stay shorter than that. A blocked thread's wake-up is
// on the path of every message between two clients: at K=1 with 64 B bodies a one-shard hub was idle
// a third of the time while its clients waited, and 100 us of polling took it from 7.4M to 9.0M
// deliveries/s and its p50 latency at 20k msgs/s from 96 to 41 us. It also took the hub's CPU at
// 20k msgs/s from 31% of a core to 99%, and (a first version, which polled after every burst) the
// 100k relay stress run's hub CPU from about 18 to 25 s of the box's two shared cores. So it is off by
// default: a flag for a hub with cores to spare (docs/perf/README.md, "Idle polling").
inline constexpr std::chrono::microseconds kDefaultIdlePoll{0};

// How long a stopping hub keeps flushing queued bytes before it closes every connection.
inline constexpr std::chrono::milliseconds kDefaultShutdownGrace{2000};

// Everything the hub holds for clients (frames, assemblies, replies, send batches, queues) is charged
// against one budget. 1 GiB fits a small box next to its other work and still holds a thousand
// 1 MiB frames in flight; 0 asks for kPhysicalMemoryShare of physical RAM instead.
inline constexpr std::size_t kDefaultMaxMemory = std::size_t{1} << 30;
inline constexpr std::size_t kPhysicalMemoryDivisor = 4;  // --max-memory 0: a quarter of RAM

// A frame started and not finished within this long ends the connection with ERROR 8: a client that
// announces 1 MiB and trickles it must not hold memory and a slot forever. 30 s is generous for a
// 1 MiB body over any link a relay client should be on.
inline constexpr std::chrono::milliseconds kDefaultFrameTimeout{30'000};
// Past the high watermark (3/4 of --max-memory) the hub pauses senders until memory frees, so a client
// whose send has taken no byte for this long is a slow consumer whatever it has queued: each under its
// own --max-outbound-bytes, 18 such clients filled the default budget and held every client for good.
// NATS's write deadline was 2 s for years; a client that reads at all is never stalled this long.
inline constexpr std::chrono::milliseconds kDefaultWriteDeadline{2'000};

// TCP keepalive on every accepted socket, so peers that vanished without a FIN (a pulled cable, a
// crashed VM) are found: 2 minutes idle, then 4 probes 30 s apart, about 4 minutes in all. Minutes, not
// the kernel's default 2 hours; long enough that a quiet listener costs nothing noticeable.
inline constexpr std::chrono::seconds kDefaultKeepaliveIdle{120};
inline constexpr std::chrono::seconds kDefaultKeepaliveInterval{30};
inline constexpr int kDefaultKeepaliveCount = 4;

struct HubConfig {
  std::string bind_address = "127.0.0.1";
  std::uint16_t relay_port = 7400;  // 0 picks an ephemeral port (tests)
  std::uint16_t line_port = 7401;   // the line protocol; 0 picks an ephemeral port
  std::uint16_t admin_port = 7402;  // GET /metrics and /healthz; 0 picks an ephemeral port
  bool admin_enabled = true;        // tests that do not need the admin plane turn it off
  std::size_t max_line_bytes = kDefaultMaxLineBytes;
  std::size_t max_line_pending_bytes = kDefaultMaxLinePendingBytes;  // per connection, past half the budget
  bool line_reforward = true;  // re-forward a message whose receiver left before answering
  unsigned shards = 0;         // 0 = max(cores, what max_connections needs)
  unsigned threads = 0;        // threads driving the shards; 0 = cores; never more than shards
  std::size_t max_connections = kDefaultMaxConnections;
  std::size_t max_outbound_bytes = kDefaultMaxOutboundBytes;
  std::uint32_t recv_buffer_size = kDefaultRecvBufferSize;
  std::uint32_t recv_buffer_count = 0;  // per shard; 0: kDefaultRecvBufferCount or what fits (Hub::start)
  std::uint32_t batch_threshold = kDefaultBatchThreshold;
  bool send_zc = false;  // IORING_OP_SENDMSG_ZC: pays on real NICs for large bodies, not on loopback
  std::chrono::milliseconds shutdown_grace = kDefaultShutdownGrace;
  std::chrono::microseconds idle_poll = kDefaultIdlePoll;
  std::size_t max_memory = kDefaultMaxMemory;  // 0: a share of physical RAM (resolved by Hub::start)
  std::chrono::milliseconds frame_timeout = kDefaultFrameTimeout;
  std::chrono::milliseconds write_deadline = kDefaultWriteDeadline;  // 0: never cut a stalled client
  std::chrono::seconds keepalive_idle = kDefaultKeepaliveIdle;       // 0: no keepalive
  std::chrono::seconds keepalive_interval = kDefaultKeepaliveInterval;
  int keepalive_count = kDefaultKeepaliveCount;
  // A connection that sends nothing for this long is closed (FIN after its queue is written); 0: never.
  // Off by default for both: a relay listener may rightly only receive, and a line client may wait
  // long for its ok. Keepalive finds dead peers either way.
  std::chrono::milliseconds relay_idle_timeout{0};
  std::chrono::milliseconds line_idle_timeout{0};
};

}  // namespace ringhub
