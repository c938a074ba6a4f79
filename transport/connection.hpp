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

namespace ringhub {

// The shard clock: the steady clock to the millisecond, read once per loop iteration (Shard::now_).
using ShardTime = std::chrono::time_point<std::chrono::steady_clock, std::chrono::milliseconds>;

// Iovecs per sendmsg: enough to batch a burst of small deliveries into one syscall, small enough
// that the context stays in cache. Bytes per sendmsg: a few loopback socket buffers' worth.
inline constexpr std::size_t kMaxIovPerSend = 64;
inline constexpr std::size_t kMaxBytesPerSend = 4U << 20;
// Send contexts a shard keeps for reuse (about 1 KiB each); more are freed, so a burst of many
// concurrent sends does not stay in the hub's RSS.
inline constexpr std::size_t kMaxFreeSendContexts = 1024;
// The copy buffer of one send for small frames (HubConfig::batch_threshold): at most a loopback socket
// buffer's worth, and no larger than the power of two above what the connection has queued, so a send
// held by a reader that stopped reading pins about as much batch as it has queue (100k such readers
// with 64 KiB each would be 6.4 GB). Pooled contexts keep theirs only up to kMaxFreeBatchBuffers.
inline constexpr std::size_t kSendBatchBytes = 64U << 10;
inline constexpr std::size_t kMinSendBatchBytes = 512;
// A batch's allocation (HeapBlock header and malloc's rounding included) stays within the sizes above,
// so the largest one is still below LargeBlockMemory::kMinBytes: malloc reuses a freed batch at once,
// where a map of its own would cost page faults on every short send.
inline constexpr std::size_t kBatchBlockOverhead = 64;
static_assert(HeapBlock::kHeaderBytes + 16 <= kBatchBlockOverhead);
// Batch blocks one send may fill: the context's own, then full-size ones made for it, which the copied
// slices keep until they are written. 16 hold 1 MiB of small frames, a queue the hub then lends
// receive buffers to (Shard::batches_this_iteration) and copies into batches in one pass.
inline constexpr std::size_t kMaxBatchBlocksPerSend = 16;
inline constexpr std::size_t kLendableQueueBytes =
    kMaxBatchBlocksPerSend * (kSendBatchBytes - kBatchBlockOverhead);
inline constexpr std::size_t kMaxFreeBatchBuffers = 64;

// What one sendmsg in flight needs to stay put until it completes. Pooled per shard: an idle
// connection holds none.
struct SendContext {
  msghdr msg{};
  iovec iov[kMaxIovPerSend]{};
  std::size_t bytes = 0;
  std::vector<BlockRef> zc_hold;  // send_zc: blocks the kernel may still read until the notification
  // Made on first use. Slices refer to the bytes copied into it, so after a short send the unsent rest
  // keeps it alive (and the next send takes a new one).
  BlockRef batch;
  SendContext* next = nullptr;  // free list, or a connection's list awaiting zc notifications
};

enum class ConnState : std::uint8_t {
  kOpen,      // registered, parsing frames
  kDraining,  // unregistered, input discarded, flushing its last bytes, then shutdown and wait for EOF
  kClosing,   // cancelling what is in flight; close_direct once nothing references it
};

namespace bi = boost::intrusive;
using AutoUnlinkHook = bi::list_member_hook<bi::link_mode<bi::auto_unlink>>;

// Contract: owned by one shard and touched only by its thread. Freed only when pending_ops is 0,
// i.e. no SQE anywhere still carries its address.
struct alignas(16) Connection : Peer {
  Connection(std::uint32_t fixed_slot, AssemblyAccounting* accounting, MemoryAccount* memory)
      : slot(fixed_slot), assembler(accounting), outbound(memory) {}

  std::uint32_t slot;                    // direct descriptor index in the shard ring's file table
  Protocol protocol = Protocol::kRelay;  // set at the accept, with `lines` for a line connection
  std::unique_ptr<LineSplitter> lines;   // set for line-protocol connections only
  ConnState state = ConnState::kOpen;
  bool registered = false;
  bool recv_armed = false;            // a recv (recv_op) is in flight
  Op recv_op = Op::kRecv;             // kRecv: multishot into receive buffers; kRecvDirect: into a frame
  std::uint32_t recv_limit = 0;       // the total length its multishot recv was armed with (0: none)
  bool recv_cancel_sent = false;      // the multishot recv is being stopped (direct receive or a pause)
  bool read_paused = false;           // input waits for memory to free (on the shard's paused list)
  bool heavy = false;                 // its current or last frame was large: paused first under pressure
  bool frame_reserved = false;        // its large frame under way has its size reserved: read to its end
  std::uint32_t reserved_bytes = 0;   // of that reservation, not yet charged as the block fills
  std::uint32_t charged_through = 0;  // bytes of that frame charged so far
  bool send_in_flight = false;
  bool shutdown_sent = false;
  bool timer_armed = false;
  bool close_sent = false;
  std::uint16_t pending_ops = 0;      // SQEs (and cross-shard gathers) whose completion will name us
  std::uint32_t next_token = 0;       // placeholder tokens for gathered replies
  SendContext* send = nullptr;        // the send in flight
  SendContext* zc_waiting = nullptr;  // sends whose zero-copy notification is still due (FIFO)
  std::size_t inflight_bytes = 0;
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
  AutoUnlinkHook waiting_hook;     // its recv stopped for lack of buffers, or paused for memory
  AutoUnlinkHook all_hook;         // every connection object on the shard, open or not
  AutoUnlinkHook assembling_hook;  // holds a partial frame: the frame-timeout clock runs
  AutoUnlinkHook activity_hook;    // on the idle-timeout list of its protocol, least recently heard first
  ShardTime last_input;            // when its last bytes were received (idle timeout)

  using DirtyList = bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::dirty_hook>,
                             bi::constant_time_size<false>>;
  using AllList = bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::all_hook>,
                           bi::constant_time_size<false>>;
  using WaitingList =
      bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::waiting_hook>,
               bi::constant_time_size<false>>;
  using AssemblingList =
      bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::assembling_hook>,
               bi::constant_time_size<false>>;
  using ActivityList =
      bi::list<Connection, bi::member_hook<Connection, AutoUnlinkHook, &Connection::activity_hook>,
               bi::constant_time_size<false>>;
};

}  // namespace ringhub
