// Single-stream loopback TCP throughput: one sender thread writes fixed-size chunks to one receiver
// thread over a 127.0.0.1 connection. The ceiling any relay on this box shares, since every relayed
// byte crosses loopback at least twice (publisher -> hub -> subscriber).
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

}  // namespace ringhub::limits
