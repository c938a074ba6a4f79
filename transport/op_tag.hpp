// The hub's completion kinds: what each shard SQE's user_data names (the encoding itself, pointer plus
// kind in the low four bits, is transport/uring/tag.hpp, shared with the client loop). One switch in
// the shard dispatches on the kind.
#pragma once

#include <cstdint>

#include "transport/uring/tag.hpp"

namespace ringhub {

enum class Op : std::uint8_t {
  kIgnore = 0,        // cancels and link timeouts: nothing to do on completion
  kAccept = 1,        // multishot accept; pointer: the shard's Acceptor
  kRecv = 2,          // multishot recv; pointer: Connection
  kSend = 3,          // sendmsg / sendmsg_zc; pointer: Connection
  kShutdown = 4,      // shutdown(SHUT_WR) before a drain; pointer: Connection
  kClose = 5,         // close_direct; pointer: Connection
  kConnTimer = 6,     // a connection's drain deadline; pointer: Connection
  kInbox = 7,         // a cross-shard batch arriving via MSG_RING; pointer: ShardBatch
  kOutbox = 8,        // our MSG_RING send completing; number: the target shard
  kShardTimer = 9,    // the shard's own timer (accept retry, shutdown grace); pointer: Shard
  kStop = 10,         // the control thread asks the shard to stop; pointer: none
  kAcceptLine = 11,   // multishot accept on the line-protocol listener; pointer: the Acceptor
  kRecvDirect = 12,   // a large frame's bytes received straight into its block; pointer: Connection
  kHangupWatch = 13,  // a poll for a reset while the hub does not read the connection; pointer: Connection
};
static_assert(uring::kind_fits(Op::kHangupWatch));
static_assert(uring::is_unwatched_kind(Op::kIgnore));

using uring::tag;
using uring::tag_number;
using uring::tag_number_of;
using uring::tag_owner;
inline Op tag_op(std::uint64_t user_data) {
  return uring::tag_kind<Op>(user_data);
}

}  // namespace ringhub
