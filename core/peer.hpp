// Peer: what the protocol services (core/relay_service, core/line_service) keep on each client
// connection: its registry hooks and id, and each service's own fields. A connection speaks one
// protocol, so one service uses it. The shard's Connection derives from it; the tests make bare ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/registry.hpp"

namespace ringhub {

struct ListGather;

struct Peer : RegistryEntry {
  // LineService
  std::uint32_t line_index = 0;        // position in the service's random-pick array
  bool line_pickable = false;          // in that array: registered and not half-closed
  bool line_half_closed = false;       // gone from the service but still reading (LineService::half_close)
  std::size_t line_pending_bytes = 0;  // pending_cost of the `message X` it sent and not yet answered
  // Held back: the X of `message X` it sent past its allowance while hub memory was past half the
  // budget, each followed by "\n", oldest from line_held_head on; read, not yet taken in.
  std::string line_held;
  std::size_t line_held_head = 0;
  std::uint32_t line_held_count = 0;
  bool line_throttled = false;  // holds messages back and is not read until they are taken in
  // RelayService: a multi-shard LIST's gather under way, and the one the LISTs after it join
  ListGather* list_asking = nullptr;
  ListGather* list_waiting = nullptr;
};

using LinePeer = Peer;
using RelayPeer = Peer;

}  // namespace ringhub
