// Connection: one accepted client socket on one shard: its direct-descriptor slot, lifecycle state,
// inbound frame assembler and outbound queue. Lives from accept to the close_direct completion.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <boost/intrusive/list.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/frame_assembler.hpp"
#include "core/line_protocol.hpp"
#include "core/line_service.hpp"
#include "core/memory_account.hpp"
#include "core/outbound_queue.hpp"
#include "core/peer.hpp"
#include "core/registry.hpp"
#include "transport/client_protocol.hpp"
#include "transport/op_tag.hpp"
#include "transport/send_contexts.hpp"
#include "transport/uring/stream.hpp"

namespace ringhub {

// The shard clock: the steady clock to the millisecond, read once per loop iteration (Shard::now_).
using ShardTime = std::chrono::time_point<std::chrono::steady_clock, std::chrono::milliseconds>;

enum class ConnState : std::uint8_t {
  kOpen,      // registered, parsing frames
  kDraining,  // unregistered, input discarded, flushing its last bytes, then shutdown and wait for EOF
  kClosing,   // cancelling what is in flight; close_direct once nothing references it
};

namespace bi = boost::intrusive;
using AutoUnlinkHook = bi::list_member_hook<bi::link_mode<bi::auto_unlink>>;

// Contract: owned by one shard and touched only by its thread. Freed only when pending_ops is 0,
// i.e. no SQE anywhere still carries its address; on the hub, pending_ops also counts the cross-shard
// gathers (LIST, maybe-tallies) whose replies will name it. The Stream base is its slot in the shard
// ring's file table, what is in flight, and the engine's close sequence.
struct alignas(16) Connection : Peer, uring::Stream {
  Connection(std::uint32_t fixed_slot, AssemblyAccounting* accounting, MemoryAccount* memory)
      : Stream(fixed_slot), assembler(accounting), outbound(memory) {}

  Protocol protocol = Protocol::kRelay;  // set at the accept, with `lines` for a line connection
  std::unique_ptr<LineSplitter> lines;   // set for line-protocol connections only
  ConnState state = ConnState::kOpen;
  bool registered = false;
  bool awaits_own_messages = false;  // half-closed line connection, nobody else live: its messages come back
  Op recv_op = Op::kRecv;  // the recv armed: kRecv, multishot into receive buffers; kRecvDirect, into a frame
  std::uint32_t recv_limit = 0;       // the total length its multishot recv was armed with (0: none)
  bool recv_cancel_sent = false;      // the multishot recv is being stopped (direct receive or a pause)
  bool read_paused = false;           // input waits for memory to free (on the shard's paused list)
  bool hangup_watch = false;          // a poll for its reset is armed (set while its input is not read)
  bool heavy = false;                 // its current or last frame was large: paused first under pressure
  bool reads_directly = false;        // ... larger than kDirectReadFrameBytes: read one buffer at a time
  bool frame_reserved = false;        // its large frame under way has its size reserved: read to its end
  std::uint32_t reserved_bytes = 0;   // of that reservation, not yet charged as the block fills
  std::uint32_t charged_through = 0;  // bytes of that frame charged so far
  bool shutdown_sent = false;
  bool timer_armed = false;
  std::uint32_t next_token = 0;       // placeholder tokens for gathered replies
  SendContext* send = nullptr;        // the send in flight
  SendContext* zc_waiting = nullptr;  // sends whose zero-copy notification is still due (FIFO)
  std::size_t inflight_bytes = 0;
  ShardTime send_started;                 // when the send in flight went out
  std::uint64_t bytes_written = 0;        // every byte the client has taken from the hub
  std::uint64_t written_at_deadline = 0;  // bytes_written when its drain deadline was last armed
  // The outbound position after the last slice that borrows a receive buffer (0: none); the loop
  // iteration's flush copies such slices into a send batch, or out, before the buffer is needed again.
  std::uint64_t lent_end = 0;
  std::uint64_t frames_in = 0;      // complete frames parsed, to tell one partial frame from the next
  std::uint64_t clocked_frame = 0;  // frames_in when the partial frame's clock started
  ShardTime frame_started;          // when the partial frame began
  FrameAssembler assembler;
  BlockRef direct_target;  // the block a direct recv in flight writes into, held until it completes
  OutboundQueue outbound;
  AutoUnlinkHook dirty_hook;       // has bytes to send this loop iteration
  AutoUnlinkHook all_hook;         // every connection object on the shard, open or not
  AutoUnlinkHook assembling_hook;  // holds a partial frame: the frame-timeout clock runs
  AutoUnlinkHook activity_hook;    // on the idle-timeout list of its protocol, least recently heard first
  AutoUnlinkHook spare_ring_hook;  // its queue, emptied by sending, keeps its slice ring until the tick
  ShardTime last_input;            // when its last bytes were received (idle timeout)

  using DirtyList = bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::dirty_hook>,
                             bi::constant_time_size<false>>;
  using AllList = bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::all_hook>,
                           bi::constant_time_size<false>>;
  // Paused for memory (the memory gate's lists), on the Stream's wait hook (uring::WaitHook).
  using WaitingList = bi::list<Connection, bi::base_hook<uring::WaitHook>, bi::constant_time_size<false>>;
  using AssemblingList =
      bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::assembling_hook>,
               bi::constant_time_size<false>>;
  using ActivityList =
      bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::activity_hook>,
               bi::constant_time_size<false>>;
  using SpareRingList =
      bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::spare_ring_hook>,
               bi::constant_time_size<false>>;
};

}  // namespace ringhub
