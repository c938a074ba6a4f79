// Shard: one thread, one io_uring, its share of the connections. Accepts on its own SO_REUSEPORT
// listener, has its ReadSide (transport/read_side.hpp) read them, parses frames, fans relays out
// (posting to other shards what lives there), and has its Sender (transport/sender.hpp) write each
// connection's queue, one sendmsg per loop iteration.
#pragma once

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "core/id_directory.hpp"
#include "core/idle_poll.hpp"
#include "core/keyed_hash.hpp"
#include "core/line_service.hpp"
#include "core/memory_account.hpp"
#include "core/registry.hpp"
#include "core/relay_service.hpp"
#include "core/result.hpp"
#include "core/stats.hpp"
#include "transport/acceptor.hpp"
#include "transport/client_protocol.hpp"
#include "transport/connection.hpp"
#include "transport/connection_clocks.hpp"
#include "transport/connection_lifecycle.hpp"
#include "transport/hub_config.hpp"
#include "transport/hub_shared.hpp"
#include "transport/memory_gate.hpp"
#include "transport/read_side.hpp"
#include "transport/sender.hpp"
#include "transport/shard_mailbox.hpp"
#include "transport/uring/buffer_ring.hpp"
#include "transport/uring/event_loop.hpp"
#include "transport/uring/ring.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub {

// While finished but waiting for other shards, a shard's thread wakes this often to look at their
// progress.
inline constexpr std::chrono::milliseconds kFinishPoll{5};

// Contract: constructed, initialised, run and destroyed on the one thread that drives it (alone or
// with other shards, transport/shard_thread.hpp), except that the Hub reads ring_fd() after init and
// the control thread posts kStop to it by MSG_RING. Aligned because its address tags completions
// (the tick).
class alignas(uring::kTagAlignment) Shard final : private uring::LoopHandler {
 public:
  Shard(HubShared& shared, unsigned index, int relay_listen_fd, int line_listen_fd);
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard();

  // Creates the ring, the file table and the buffer ring on the calling thread (SINGLE_ISSUER).
  // kCooperative for a thread that drives several shards (transport/shard_thread.cpp).
  Result<void> init(uring::TaskRun task_run);
  int ring_fd() const { return loop_.ring().fd(); }
  // Signals `event_fd` on each completion of this (kCooperative) ring; 0 or -errno.
  int register_wake_eventfd(int event_fd) { return loop_.ring().register_eventfd(event_fd); }
  // Runs until stopped and every shard has finished its work, blocking in its own ring: for a thread
  // that drives this shard alone.
  void run();
  // For a thread that drives several shards: start() once, then step() until finished(), then
  // end_run(). step() does what is ready and submits, never blocking (the thread blocks in poll() on
  // the ring fds); it returns how many completions it handled.
  void start();
  unsigned step();
  bool finished() const;
  void end_run();
  // Finished here, waiting for other shards: the thread must wake every kFinishPoll to look again.
  bool waiting_for_others() const { return counted_finished_; }
  std::chrono::microseconds idle_poll() const { return config_.idle_poll; }

 private:
  // --- loop (shard.cpp)
  // The loop's handler (uring::LoopHandler): completions by their tag, and a recv that waited for a
  // receive buffer.
  void on_completion(const io_uring_cqe& cqe) override;
  void on_buffers_back(uring::Stream& stream) override {
    read_.resume_reading(static_cast<Connection&>(stream));
  }
  void before_wait();
  // Reads the shard clock and the hub-wide memory figure once per loop iteration.
  void read_clock_and_budget();
  io_uring_sqe* sqe();
  void publish_counters();
  // Charges the memory account for the line messages pending on this shard (their table and X bytes)
  // and those its connections hold back.
  void charge_pending_lines();
  // Hub memory fell below where line messages are held back: every connection takes in what it held.
  void release_held_lines();

  // --- admission and stopping (shard_connections.cpp; the accepts are transport/acceptor, the drain
  // and close of a connection transport/connection_lifecycle)
  void on_accept(const io_uring_cqe& cqe, Protocol protocol);
  void admit(std::uint32_t slot, Protocol protocol);
  bool at_capacity(Protocol protocol) const;
  void on_stop();
  void on_tick(const io_uring_cqe& cqe);
  // Past the high watermark the hub stops reading senders until memory frees, so clients that do not
  // read what is queued for them could hold it there, and every client with it, for good (18 of them
  // under their own cap filled the budget): those stalled past --write-deadline-ms are cut, ERROR 6.
  void cut_stalled_consumers();
  void arm_tick();
  void trim_heap_after_burst();

  // --- reading is transport/read_side; this is what it hands to the protocols (shard_relay.cpp,
  // shard_line.cpp)
  class ReadEventsOnShard final : public ReadEvents {
   public:
    explicit ReadEventsOnShard(Shard& shard) : shard_(shard) {}
    void on_frame_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) override {
      shard_.on_frame_bytes(conn, buffer, length);
    }
    void on_line_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) override {
      shard_.on_line_bytes(conn, buffer, length);
    }
    bool on_frame(Connection& conn, FrameView&& frame) override {
      return shard_.on_frame(conn, std::move(frame));
    }
    bool holds_lines_back(const Connection& conn) const override {
      return conn.protocol == Protocol::kLine && conn.line_held_count != 0;
    }

   private:
    Shard& shard_;
  };

  // --- the relay protocol (shard_relay.cpp): the semantics are core/relay_service; this is its seam,
  // the frame entry point and the inbox
  class RelaySeamOnShard final : public RelaySeam {
   public:
    explicit RelaySeamOnShard(Shard& shard) : shard_(shard) {}
    void send(RelayPeer& peer, const BlockRef& block, std::uint32_t offset, std::uint32_t length) override;
    BlockRef copy(std::span<const std::uint8_t> bytes, CopyReason reason) override;
    bool send_copy(RelayPeer& peer, std::span<const std::uint8_t> bytes, CopyReason reason) override;
    ReplySlot hold_reply(RelayPeer& peer) override;
    void fill_replies(RelayPeer& peer, std::span<const ReplySlot> slots, const BlockRef& block,
                      std::uint32_t length) override;
    bool closing(const RelayPeer& peer) const override;
    bool sends_at_once(const RelayPeer& peer, std::uint32_t length) const override;
    void hold(RelayPeer& peer) override;
    void release(RelayPeer& peer) override;
    void out_of_memory(RelayPeer& peer, std::string_view what) override;
    void post(unsigned target, ShardMessage* message) override;

   private:
    Shard& shard_;
  };
  void on_frame_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length);
  bool on_frame(Connection& conn, FrameView&& frame);

  // --- messages from other shards (and this one) to the services they belong to (shard.cpp)
  class MessageRouter final : public MessageRecipient {
   public:
    explicit MessageRouter(Shard& shard) : shard_(shard) {}
    void on_message(ShardMessage* message) override;

   private:
    Shard& shard_;
  };

  // --- the line protocol (shard_line.cpp): the semantics are core/line_service; this is its seam
  class LineSeamOnShard final : public LineSeam {
   public:
    explicit LineSeamOnShard(Shard& shard) : shard_(shard) {}
    void write(LinePeer& peer, std::string_view text) override;
    void resume_reading(LinePeer& peer) override;
    bool holding_back() const override { return shard_.gate_.holds_back_lines(); }
    void post(unsigned target, LineMessage* message) override;
    std::uint32_t line_count(unsigned shard) const override;
    void publish_line_count(std::uint32_t count) override;

   private:
    Shard& shard_;
  };
  static LineServiceConfig line_service_config(const HubShared& shared, unsigned index);
  void on_line_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length);

  // --- the memory gate (transport/memory_gate) lets a paused connection be read again
  class GateEventsOnShard final : public GateEvents {
   public:
    explicit GateEventsOnShard(Shard& shard) : shard_(shard) {}
    void on_resumed(Connection& conn) override;

   private:
    Shard& shard_;
  };

  // --- the timeouts are transport/connection_clocks; the lifecycle ends whom they name
  class ClockEventsOnShard final : public ClockEvents {
   public:
    explicit ClockEventsOnShard(Shard& shard) : shard_(shard) {}
    void on_frame_timeout(Connection& conn) override;
    void on_idle(Connection& conn, std::chrono::milliseconds silent_for) override;

   private:
    Shard& shard_;
  };

  // --- the lifecycle (transport/connection_lifecycle) asks the services and the read side
  class LifecycleEventsOnShard final : public LifecycleEvents {
   public:
    explicit LifecycleEventsOnShard(Shard& shard) : shard_(shard) {}
    void leave_services(Connection& conn, bool was_registered) override;
    bool half_close_line(Connection& conn) override;
    void resume_reading(Connection& conn) override { shard_.read_.resume_reading(conn); }

   private:
    Shard& shard_;
  };

  // --- the write side is transport/sender; this is what it reports to the lifecycle
  class SendEventsOnShard final : public SendEvents {
   public:
    explicit SendEventsOnShard(Shard& shard) : shard_(shard) {}
    void on_unwritable(Connection& conn) override;
    void on_slow_consumer(Connection& conn) override;
    void on_send_done(Connection& conn) override;
    void on_notified(Connection& conn) override;

   private:
    Shard& shard_;
  };

  HubShared& shared_;
  const HubConfig& config_;
  const unsigned index_;
  ShardCounters& counters_;
  uring::EventLoop loop_;  // the ring, its receive buffers and the recvs waiting for one
  Acceptor acceptor_;
  RelaySeamOnShard relay_seam_{*this};
  RelayService relay_;  // relay connections, IDENTITY, LIST and RELAY
  LineSeamOnShard line_seam_{*this};
  LineService line_;       // line connections, and line messages whose X this shard owns
  MemoryAccount& memory_;  // this shard's share of the budget
  SendEventsOnShard send_events_{*this};
  Sender sender_;
  GateEventsOnShard gate_events_{*this};
  MemoryGate gate_;
  ClockEventsOnShard clock_events_{*this};
  ConnectionClocks clocks_;
  LifecycleEventsOnShard lifecycle_events_{*this};
  ConnectionLifecycle lifecycle_;  // every connection object of the shard, from accept to free
  ReadEventsOnShard read_events_{*this};
  ReadSide read_;
  AssemblyAccounting assembly_;
  std::size_t pending_lines_charged_ = 0;
  std::size_t capacity_ = 0;  // connections this shard admits (table minus reserve)

  ShardTime now_;                         // shard clock, read once per iteration
  std::int64_t memory_at_last_trim_ = 0;  // shard 0: hub memory when the heap was last trimmed
  ShardTime last_trim_;

  MessageRouter router_{*this};
  ShardMailbox mailbox_;  // messages to and from the other shards

  bool stopping_ = false;
  bool counted_finished_ = false;
  bool tick_armed_ = false;
  __kernel_timespec tick_ts_{};
};

}  // namespace ringhub
