// Acceptor: a shard's multishot accepts, one per protocol's listening socket, straight into its ring's
// direct-descriptor table. It keeps them armed and hands over each accepted slot; whether the connection
// is admitted or turned away is the shard's business.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <optional>

#include "transport/client_protocol.hpp"
#include "transport/uring/ring.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub {

// Contract: owned by one shard and used on its thread. Aligned because its address tags the accepts.
class alignas(uring::kTagAlignment) Acceptor {
 public:
  // `listen_fds[kLine]` is -1 when the hub has no line listener.
  Acceptor(uring::Ring& ring, PerProtocol<int> listen_fds, unsigned shard_index)
      : ring_(ring), listen_fds_(listen_fds), shard_index_(shard_index) {}
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Arms every listener's accept that is not armed: at start, and at each tick, so an accept that
  // failed for a transient error gets another go (not while waiting for room).
  void arm_all();
  // A completion of the accept on `protocol`: the slot of the accepted socket, or nothing. A failed
  // accept is logged and left for the next arm_all rather than retried in a spin.
  std::optional<std::uint32_t> on_completion(const io_uring_cqe& cqe, Protocol protocol);
  // Cancels the accepts for good (the hub is stopping; their last completions still arrive) and shuts
  // its listening sockets down: a client that connects from now on is refused at once, and one whose
  // handshake completed but was not accepted yet is reset, rather than left in the backlog unserved
  // until the hub exits.
  void stop();
  // Whether an accept may still complete.
  bool armed() const { return armed_[Protocol::kRelay] || armed_[Protocol::kLine]; }

  // The shard's file table has no free slot: the accepts are cancelled and not re-armed until
  // offer_room(), so new connections wait in the listen queue. An accept into a full table would take
  // a connection off the queue and drop it (ENFILE): a bare EOF for that client, one per try.
  void wait_for_room();
  // `free_slots` slots are free again. Until there are kRejectReserve of them, accepts are single
  // shots, no more at once than the free slots, and each waits for the next offer when it completes:
  // a multishot accept takes every queued connection at once and would drop one at the full table.
  void offer_room(std::size_t free_slots);
  bool waiting_for_room() const { return waiting_for_room_; }

 private:
  void arm(Protocol protocol);
  void cancel_armed();  // their last completions still arrive
  unsigned armed_count() const {
    return unsigned{armed_[Protocol::kRelay]} + unsigned{armed_[Protocol::kLine]};
  }

  uring::Ring& ring_;
  const PerProtocol<int> listen_fds_;
  const unsigned shard_index_;
  PerProtocol<bool> armed_;
  bool stopped_ = false;
  bool waiting_for_room_ = false;
  bool single_shots_ = false;       // since the table was full, until kRejectReserve slots are free
  bool table_full_logged_ = false;  // a full file table is logged once until an accept succeeds again
};

}  // namespace ringhub
