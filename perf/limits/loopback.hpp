// Loopback TCP on this box. Single-stream throughput: one sender thread writes fixed-size chunks to one
// receiver thread over a 127.0.0.1 connection, the ceiling any relay here shares, since every relayed
// byte crosses loopback at least twice (publisher -> hub -> subscriber). And the relay floor: the CPU a
// relay that only moves bytes spends per byte, by copying or by splice().
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/result.hpp"

namespace ringhub::limits {

struct LoopbackSpec {
  std::size_t write_size = 1U << 20;  // bytes per send(); the receiver reads in chunks of this size
  double duration_s = 2.0;            // the sender stops writing after this long...
  std::uint64_t max_bytes = 0;        // ...or after this many bytes, whichever comes first
  int sender_cpu = -1;                // -1: leave the thread where the kernel puts it
  int receiver_cpu = -1;
};

// Bytes per second the receiver read, from the first write to end-of-stream.
Result<double> measure_loopback(const LoopbackSpec& spec);

// The relay floor: what relaying costs this box when the relay does nothing but move bytes. On each of
// `streams` paths a writer sends to a relay thread over loopback, which passes the bytes on to a reader
// over a second connection: by read() and write() through a user-space buffer (a copy in and a copy
// out, as every copying server does), or by splice() through a pipe (no copy into user space). The
// relay threads run on `relay_cpu` and the writers and readers on `load_cpu`, as perf/compare pins a
// server and ringhub-perf.
enum class RelayMethod : std::uint8_t { kCopy, kSplice };

struct RelayFloorSpec {
  RelayMethod method = RelayMethod::kCopy;
  unsigned streams = 4;
  std::size_t write_size = 1U << 20;  // bytes per write(), and at most per read() or splice()
  double duration_s = 2.0;            // the writers stop after this long...
  std::uint64_t max_bytes = 0;        // ...or after this many bytes each, whichever comes first
  int relay_cpu = -1;                 // -1: leave the threads where the kernel puts them
  int load_cpu = -1;
};

// What a relay-floor run cost. CPU time is user and system, per byte relayed. The writers' and readers'
// figure matters as much as the relay's: a relay that saves its own copies can make the endpoints'
// copies dearer (spliced pages arrive cold and in small pieces), and on one box they share the cores.
struct RelayFloor {
  double relay_ns_per_byte = 0;  // the relay threads
  double load_ns_per_byte = 0;   // the writers and readers together
  double bytes_per_s = 0;        // relayed over all streams, from the first write to the last read
};

Result<RelayFloor> measure_relay_floor(const RelayFloorSpec& spec);

}  // namespace ringhub::limits
