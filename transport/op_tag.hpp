// How a completion finds its owner: every SQE's user_data is a pointer with the operation kind in
// its low four bits (owners are 16-byte aligned). One switch in the shard dispatches on the kind.
#pragma once

#include <cstdint>

namespace ringhub {

enum class Op : std::uint8_t {
  kIgnore = 0,       // cancels and link timeouts: nothing to do on completion
  kAccept = 1,       // multishot accept; pointer: the Shard
  kRecv = 2,         // multishot recv; pointer: Connection
  kSend = 3,         // sendmsg / sendmsg_zc; pointer: Connection
  kShutdown = 4,     // shutdown(SHUT_WR) before a drain; pointer: Connection
  kClose = 5,        // close_direct; pointer: Connection
  kConnTimer = 6,    // a connection's drain deadline; pointer: Connection
  kInbox = 7,        // a cross-shard batch arriving via MSG_RING; pointer: ShardBatch
  kOutbox = 8,       // our MSG_RING send completing; pointer: ShardBatch
  kShardTimer = 9,   // the shard's own timer (accept retry, shutdown grace); pointer: Shard
  kStop = 10,        // the control thread asks the shard to stop; pointer: none
  kAcceptLine = 11,  // multishot accept on the line-protocol listener; pointer: the Shard
  kRecvDirect = 12,  // a large frame's bytes received straight into its block; pointer: Connection
};

inline constexpr std::uint64_t kOpMask = 0xF;

inline std::uint64_t tag(const void* owner, Op op) {
  return reinterpret_cast<std::uint64_t>(owner) | static_cast<std::uint64_t>(op);
}
inline Op tag_op(std::uint64_t user_data) {
  return static_cast<Op>(user_data & kOpMask);
}
template <typename T>
T* tag_owner(std::uint64_t user_data) {
  // The kernel hands our pointer back as an integer; turning it back is the point of user_data.
  return reinterpret_cast<T*>(user_data & ~kOpMask);  // NOLINT(performance-no-int-to-ptr)
}

}  // namespace ringhub
