// Stream: what the engine knows of one socket on a ring, the same for the hub's connections and the
// client loop's: its direct descriptor, how many SQEs still name it, what is in flight. And what both
// do with it alike: arm its recv into the provided buffers, park it while the buffers are out, and the
// close sequence (cancel the recv and the send in flight, then close_direct once nothing names it).
#pragma once

#include <boost/intrusive/list.hpp>
#include <cstdint>

#include "transport/uring/buffer_ring.hpp"
#include "transport/uring/ring.hpp"

namespace ringhub::uring {

inline constexpr std::uint32_t kNoSlot = ~std::uint32_t{0};

// Puts a stream whose reading waits on one list: its loop's BufferWaitList (its recv ended with
// ENOBUFS) or, on the hub, one of the memory gate's (paused for memory). It waits for one thing at a
// time; the hook unlinks itself when the stream goes.
struct WaitTag;
using WaitHook = boost::intrusive::list_base_hook<boost::intrusive::tag<WaitTag>,
                                                  boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// Contract: the owner counts in pending_ops every SQE whose completion names the stream, and frees or
// reuses it only when pending_ops is 0 and its close has completed.
struct Stream : WaitHook {
  Stream() = default;
  explicit Stream(std::uint32_t fixed_slot) : slot(fixed_slot) {}

  std::uint32_t slot = kNoSlot;  // index in the ring's direct-descriptor table; kNoSlot when none
  std::uint16_t pending_ops = 0;
  bool recv_armed = false;
  bool send_in_flight = false;
  bool close_sent = false;

  // No SQE names the stream and its close has not been issued: close_stream may go now.
  bool closable() const { return pending_ops == 0 && !close_sent; }
  // On a wait list (see WaitHook); stop_waiting takes it off.
  bool waiting() const { return WaitHook::is_linked(); }
  void stop_waiting() { WaitHook::unlink(); }
};

// Streams whose recv ended with ENOBUFS. Their bytes wait in the socket until a buffer is back in the
// ring: re-arming at once would fail again and spin.
class BufferWaitList {
 public:
  // Parks `stream` unless it already waits (for buffers, or on the hub for memory: resumed from there).
  void park(Stream& stream) {
    if (!stream.waiting()) {
      list_.push_back(stream);
    }
  }
  bool empty() const { return list_.empty(); }
  // Once `buffers` has a buffer in the ring again (published: recycled ones are not yet), takes every
  // parked stream off, in the order parked, and hands each to `resume` (which re-arms its recv, or not
  // if it no longer reads). A loop whose users held every buffer for good would wait here forever;
  // the hub copies out what it keeps, and client drivers hold none past their callback.
  template <class Resume>
  void resume_if_buffers(const BufferRing& buffers, Resume&& resume) {
    if (list_.empty() || buffers.held() + buffers.recycled() >= buffers.count()) {
      return;
    }
    while (!list_.empty()) {
      Stream& stream = list_.front();
      list_.pop_front();
      resume(stream);
    }
  }

 private:
  boost::intrusive::list<Stream, boost::intrusive::base_hook<WaitHook>,
                         boost::intrusive::constant_time_size<false>>
      list_;
};

// How arm_recv reads into the ring's provided buffers (transport/uring/buffer_ring.hpp).
struct RecvShape {
  bool multishot = true;
  std::uint32_t one_shot_cap = 0;  // one-shot: at most this many bytes (0: up to a whole buffer)
  // Multishot: the recv ends once it has received this many bytes in all (0: no limit). Linux 6.15+;
  // older kernels refuse the recv with -EINVAL, which the caller takes as "not supported".
  std::uint32_t multishot_limit = 0;
};

// Arms the stream's recv into the provided buffers, counted in pending_ops; recv_armed stays set until
// its last completion (one without IORING_CQE_F_MORE), which the owner handles.
void arm_recv(Ring& ring, Stream& stream, std::uint64_t recv_tag, const RecvShape& shape = {});

// Cancels the recv and the send in flight, those that are; their completions (-ECANCELED, or their
// result if they won the race) still come and settle pending_ops as any other.
void cancel_io(Ring& ring, const Stream& stream, std::uint64_t recv_tag, std::uint64_t send_tag);

// Issues close_direct on the stream's slot; the stream must be closable() and have a slot.
void close_stream(Ring& ring, Stream& stream, std::uint64_t close_tag);

}  // namespace ringhub::uring
