// Shard: one thread, one io_uring, its share of the connections. Accepts on its own SO_REUSEPORT
// listener, parses frames, fans relays out (posting to other shards what lives there), and writes
// every connection's queue with one sendmsg per loop iteration.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "core/fanout.hpp"
#include "core/id_directory.hpp"
#include "core/line_pending.hpp"
#include "core/registry.hpp"
#include "core/result.hpp"
#include "core/stats.hpp"
#include "transport/connection.hpp"
#include "transport/cross_shard.hpp"
#include "transport/hub_config.hpp"
#include "transport/recv_buffer_pool.hpp"

namespace ringhub {

// After an ERROR frame, how long the hub waits for the client to read it and close, so the close does
// not reset the connection before the client saw why.
inline constexpr std::chrono::milliseconds kErrorLinger{5000};

inline __kernel_timespec to_kernel_timespec(std::chrono::milliseconds ms) {
  return {static_cast<long long>(ms.count() / 1000), static_cast<long long>((ms.count() % 1000) * 1'000'000)};
}

// State every shard reads and a few atomics they share. Owned by the Hub, outlives every shard.
struct HubShared {
  HubShared(const HubConfig& c, unsigned shards, unsigned table, std::size_t directory_slots)
      : config(c),
        shard_count(shards),
        table_size(table),
        directory(directory_slots),
        ring_fds(shards, -1),
        counters(shards) {}

  const HubConfig config;
  const unsigned shard_count;
  const unsigned table_size;  // direct descriptors per shard ring
  IdDirectory directory;
  std::vector<int> ring_fds;  // filled before any shard runs, read-only after
  std::vector<ShardCounters> counters;
  alignas(64) std::atomic<protocol::UserId> next_id{1};
  alignas(64) std::atomic<std::size_t> live_connections{0};
  alignas(64) std::atomic<unsigned> finished_shards{0};
  // Cross-shard messages posted and not yet handled: shards exit only when this is 0 too, so no
  // message is left in a ring nobody reaps.
  alignas(64) std::atomic<std::int64_t> messages_in_flight{0};
  // Line-protocol connections per shard, read by every shard to pick a random receiver uniformly.
  std::unique_ptr<std::atomic<std::uint32_t>[]> line_counts =
      std::make_unique<std::atomic<std::uint32_t>[]>(shard_count);
  // Set by a shard whose receive buffers run low, so shards holding its bytes (through relay proxies)
  // copy them out too.
  std::unique_ptr<std::atomic<bool>[]> pool_pressure = std::make_unique<std::atomic<bool>[]>(shard_count);
};

// Contract: constructed, initialised, run and destroyed on its own thread, except that the Hub reads
// ring_fd() after init and the control thread posts kStop to it by MSG_RING.
class Shard {
 public:
  Shard(HubShared& shared, unsigned index, int relay_listen_fd, int line_listen_fd);
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;
  ~Shard();

  // Creates the ring, the file table and the buffer ring on the calling thread (SINGLE_ISSUER).
  Result<void> init();
  int ring_fd() const { return ring_.ring_fd; }
  // Runs until stopped and every shard has finished its work.
  void run();

 private:
  // --- loop (shard.cpp)
  void dispatch(const io_uring_cqe& cqe);
  void before_wait();
  bool finished() const;
  io_uring_sqe* sqe();
  void publish_counters();

  // --- accept and connection lifecycle (shard_connections.cpp)
  void arm_accepts();
  void arm_accept(bool line);
  void on_accept(const io_uring_cqe& cqe, bool line);
  void admit(std::uint32_t slot, bool line);
  bool at_capacity(bool line) const;
  void arm_recv(Connection& conn);
  void on_recv(Connection& conn, const io_uring_cqe& cqe);
  void rearm_waiting_recvs();
  // Stops reading input, writes what is queued, sends FIN, waits for the client's EOF until `deadline`
  // (a shard-owned timespec: the kernel reads it at submit time). With `last_words` (an ERROR frame or
  // error line), the queue is first cut after what a send in flight points at, then they are queued.
  void begin_drain(Connection& conn, const __kernel_timespec* deadline, std::string_view last_words = {});
  void continue_drain(Connection& conn);
  void on_shutdown(Connection& conn, const io_uring_cqe& cqe);
  void on_conn_timer(Connection& conn, const io_uring_cqe& cqe);
  void begin_close(Connection& conn);
  void maybe_finish_close(Connection& conn);
  void on_close(Connection& conn, const io_uring_cqe& cqe);
  void unregister(Connection& conn);
  void on_stop();
  void on_tick(const io_uring_cqe& cqe);
  void arm_tick();

  // --- receive-buffer pressure (shard_pressure.cpp)
  bool pool_under_pressure() const;
  bool any_pool_under_pressure() const;
  void relieve_pool_pressure(bool cancel_stuck_sends);
  // Tells the other shards (at most once per loop iteration) that this shard's buffers ran out, so they copy
  // out the slices of them that their queues hold through relay proxies, without waiting for a tick.
  void announce_pool_pressure();
  void unpin(Connection& conn);

  // --- frames and fan-out (shard_relay.cpp)
  void on_frame_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length);
  bool on_frame(Connection& conn, FrameView&& frame);
  void reply_identity(Connection& conn);
  void reply_list(Connection& conn);
  void relay(Connection& conn, FrameView& frame);
  // Queues one DELIVER slice to `receiver` if it lives here. A miss counts as a skipped receiver
  // unless the id was sent to every shard (then the origin's MaybeTally counts it once). Returns
  // whether it was queued. With `copy_if_behind`, a receiver that already has a send in flight gets a
  // heap copy instead of a reference (the block's owner is short of receive buffers).
  bool deliver_to(protocol::UserId receiver, const BlockRef& block, std::uint32_t offset,
                  std::uint32_t length, bool count_miss, bool copy_if_behind = false);
  void on_relay_done(RelayMessage* message);
  void close_with_error(Connection& conn, protocol::ErrorCode code);
  void on_inbox(ShardBatch* batch);
  void on_relay_message(RelayMessage* message);
  void on_list_query(ListMessage* message);
  void on_list_part(ListMessage* message);
  void finish_list(ListGather* gather);
  static void on_proxy_released(SharedBlock* proxy);

  // --- the line protocol (shard_line.cpp)
  void register_line(Connection& conn);
  void unregister_line(Connection& conn);
  void on_line_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length);
  bool on_line(Connection& conn, std::string_view line);
  void send_text(Connection& conn, std::string_view text);
  unsigned owner_of(std::string_view x) const;
  bool choose_line_shard(unsigned& shard);
  bool forward_to_shard(std::string_view x, std::uint64_t seq, unsigned tries);
  void on_line_message(LineMessage* message);
  void on_line_add(LineMessage* message);
  void on_line_forward(LineMessage* message);
  void on_line_no_target(LineMessage* message);
  void on_line_ok(LineMessage* message);
  void on_line_deliver_ok(LineMessage* message);
  void on_line_target_gone(LineMessage* message);
  void post_line(unsigned target, ShardMessage::Kind kind, std::string_view x, std::uint32_t endpoint_shard,
                 std::uint64_t endpoint_conn, std::uint64_t seq = 0, unsigned tries = 0);

  // --- sending (shard_send.cpp)
  void enqueue(Connection& conn, BlockRef block, std::uint32_t offset, std::uint32_t length);
  // A heap block holding a copy of `bytes` (empty if memory is exhausted); replies and unpinned slices.
  BlockRef copy_block(const std::uint8_t* bytes, std::uint32_t size);
  // Queues a copy of bytes the hub composed (a reply, an error line); closes `conn` if out of memory.
  void enqueue_copy(Connection& conn, std::span<const std::uint8_t> bytes);
  void mark_dirty(Connection& conn);
  void flush_sends();
  void start_send(Connection& conn);
  void on_send(Connection& conn, const io_uring_cqe& cqe);
  void on_send_notification(Connection& conn);
  // Gives the context a batch buffer sized for a connection with `queued_bytes` waiting (see
  // kSendBatchBytes).
  void ensure_batch(SendContext& context, std::size_t queued_bytes);
  SendContext* acquire_send_context();
  void release_send_context(SendContext* context);
  void post(unsigned target, ShardMessage* message);
  void flush_outboxes();
  void send_batch(unsigned target);
  void on_outbox_sent(unsigned target, const io_uring_cqe& cqe);
  void drain_self_inbox();
  void handle_message(ShardMessage* message);

  HubShared& shared_;
  const HubConfig& config_;
  const unsigned index_;
  const int listen_fds_[2];  // [0] relay, [1] line
  ShardCounters& counters_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::unique_ptr<RecvBufferPool> pool_;
  Registry registry_;                    // relay connections, by id
  Registry line_registry_;               // line connections, by id
  std::vector<Connection*> line_conns_;  // line connections, for a uniform random pick
  PendingMessages pending_;              // line messages whose X this shard owns
  std::mt19937_64 rng_;
  std::vector<ShardMessage*> self_inbox_;  // messages a shard posts to itself
  FanoutPlanner planner_;
  AssemblyAccounting assembly_;
  std::uint64_t reply_bytes_in_use_ = 0;
  std::size_t queued_bytes_ = 0;  // sum of outbound queues on this shard
  std::size_t conn_objects_ = 0;  // Connection objects alive (registered or not)
  std::size_t capacity_ = 0;      // connections this shard admits (table minus reserve)

  Connection::AllList all_;
  Connection::DirtyList dirty_;
  Connection::WaitingList waiting_for_buffers_;
  SendContext* free_send_contexts_ = nullptr;
  std::size_t free_send_context_count_ = 0;

  struct Outbox {
    std::vector<ShardMessage*> pending;
    ShardBatch* in_flight = nullptr;
  };
  std::vector<Outbox> outboxes_;
  std::size_t awaiting_replies_ = 0;  // messages we sent that must come back before we may exit

  bool accept_armed_[2] = {false, false};  // [0] relay, [1] line
  bool stopping_ = false;
  bool counted_finished_ = false;
  bool tick_armed_ = false;
  bool relieved_this_iteration_ = false;
  bool announced_this_iteration_ = false;
  std::uint64_t unpinned_bytes_ = 0;  // bytes copied out of pinned receive buffers
  __kernel_timespec tick_ts_{};
  __kernel_timespec linger_ts_{};  // after an ERROR frame: time for the client to read it and close
  __kernel_timespec grace_ts_{};   // hub shutdown: time to flush queued bytes
  std::vector<protocol::UserId> scratch_ids_;
  std::vector<std::uint8_t> scratch_bytes_;
};

}  // namespace ringhub
