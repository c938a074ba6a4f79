// LoopOptions: how a client library object sizes its engine (one uring::ClientLoop): receive buffers,
// the descriptor table, the ring, and the source addresses it binds. AsyncRelayOptions and
// AsyncLineOptions both extend it; the defaults fit a program of a few connections, and a load
// generator of thousands sets its own.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <vector>

#include "transport/uring/client_loop.hpp"

namespace ringhub::client {

struct LoopOptions {
  // Receive memory shared by the connections: the kernel fills these buffers as bytes arrive; when all
  // are in use, reading pauses and the hub's sends wait in TCP.
  unsigned recv_buffers = 8;
  std::uint32_t recv_buffer_size = std::uint32_t{16} << 10;
  uring::BufferRing::Residency buffer_residency = uring::BufferRing::Residency::kOnDemand;
  // Zero sizes the descriptor table and the ring for the connections (uring::size_for_connections).
  unsigned table_size = 0;
  unsigned sq_entries = 0;
  unsigned cq_entries = 0;
  // Bound before each IPv4 connect: a connect's route r uses sources[r / hubs % sources] (none: any).
  std::vector<sockaddr_in> sources;
  unsigned loop_index = 0;  // names the loop in its errors, for a program with several
};

// The engine's configuration for `conns` connections to `hubs`, from `options`.
uring::ClientLoopConfig loop_config(const LoopOptions& options, std::uint32_t conns,
                                    std::vector<uring::SocketAddress> hubs, std::int64_t connect_timeout_ns);

}  // namespace ringhub::client
