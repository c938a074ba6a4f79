// Engine: the harness's client side of io_uring: one thread, one SINGLE_ISSUER|DEFER_TASKRUN ring, direct
// sockets made by the ring, multishot recv on a provided buffer ring, one send in flight per socket and a
// timer heap. A Driver (line or relay mode) decides what each connection says; the Engine owns sockets.
#pragma once

#include <liburing.h>
#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <queue>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace ringhub::stress {

// CLOCK_MONOTONIC in nanoseconds: every deadline and latency in the harness uses it.
std::int64_t now_ns();

enum class Phase : std::uint8_t {
  kIdle,        // no socket
  kSocket,      // socket_direct_alloc in flight
  kConnecting,  // [bind ->] connect -> link timeout in flight
  kOpen,        // connected, multishot recv armed
  kClosing,     // cancelling what is in flight, then close_direct
};

// How a connection ended, handed to Driver::on_closed.
struct CloseInfo {
  bool was_open = false;   // its connect succeeded
  bool requested = false;  // Engine::close asked for it (not the hub, an error or a timeout)
  bool eof = false;        // the hub closed its side first
  int error = 0;           // errno of the first failure (ETIMEDOUT for a connect past its link timeout)
};

// One client's socket slot, reused across reconnects. Contract: owned by one Engine and its thread.
struct Conn {
  std::uint32_t index = 0;  // position in the engine's table (and in the driver's state arrays)
  std::int32_t slot = -1;   // direct descriptor, -1 when none
  Phase phase = Phase::kIdle;
  std::uint16_t pending_ops = 0;  // SQEs whose completion names this connection
  std::uint32_t gen = 0;          // bumped at every close: timers of an earlier connection are stale
  std::uint32_t route = 0;        // which (source, hub) address pair this connection uses
  bool recv_armed = false;
  bool send_in_flight = false;
  bool dirty = false;    // on the engine's list of connections with bytes to send
  bool waiting = false;  // its recv ended with ENOBUFS; re-armed when buffers return
  bool close_sent = false;
  bool close_wanted = false;  // close asked while the socket was still being created
  CloseInfo ending;
  std::vector<std::uint8_t> queued;   // bytes behind the send in flight
  std::vector<std::uint8_t> sending;  // the send in flight's bytes: stay put until its CQE
  std::size_t sent = 0;               // bytes of `sending` already written (short sends resume here)
};

// A userspace timer; Driver::on_timer gets it back when due.
struct Timer {
  std::int64_t due_ns = 0;
  std::uint32_t conn = 0;
  std::uint32_t gen = 0;  // Conn::gen when armed: compare to drop timers of a closed connection
  std::uint32_t kind = 0;
  std::uint32_t arg = 0;
  bool operator>(const Timer& other) const { return due_ns > other.due_ns; }
};

// What a mode does with connections. Called on the engine's thread only.
class Driver {
 public:
  virtual ~Driver() = default;
  virtual void on_connected(Conn& conn) = 0;
  virtual void on_bytes(Conn& conn, std::span<const std::uint8_t> bytes) = 0;
  virtual void on_drained(Conn& conn) { (void)conn; }  // every queued byte is written
  // Every connect() ends here exactly once, the socket closed and the slot free again.
  virtual void on_closed(Conn& conn, const CloseInfo& info) = 0;
  virtual void on_timer(const Timer& timer) = 0;
  virtual void on_iteration() {}  // once per loop iteration, before the wait
  virtual bool finished() const = 0;
};

struct EngineConfig {
  unsigned index = 0;
  std::uint32_t conns = 0;           // connection slots (clients) this engine drives
  unsigned table_size = 0;           // direct descriptors: at most RLIMIT_NOFILE
  unsigned buffer_count = 0;         // provided receive buffers (power of two, <= 32768)
  std::uint32_t buffer_size = 0;     // bytes each
  std::vector<sockaddr_in> hubs;     // destinations, used in turn
  std::vector<sockaddr_in> sources;  // source addresses to bind (port 0); empty: no bind
  std::int64_t connect_timeout_ns = 0;
  // A fully written send buffer larger than this is freed rather than kept for the next send: small
  // for many idle clients, large for a few publishers of big messages (no page faults per message).
  std::size_t keep_send_capacity = std::size_t{256} << 10;
  bool nodelay = true;  // TCP_NODELAY through IORING_OP_URING_CMD when the kernel has it
};

// Figures the engine keeps about itself, read by other threads for progress.
struct EngineStats {
  std::atomic<std::uint64_t> open{0};  // connections open now
  std::atomic<std::uint64_t> cq_overflows{0};
  std::atomic<std::uint64_t> enobufs{0};  // multishot recvs stopped for lack of buffers
  std::atomic<std::uint64_t> bind_failures{0};
  std::atomic<std::uint64_t> connect_failures{0};
  std::atomic<std::int64_t> max_timer_lag_ns{0};  // how late a timer fired at worst: loop saturation
};

// Contract: constructed anywhere; init(), run() and everything else on one thread (the ring's issuer).
class Engine {
 public:
  explicit Engine(EngineConfig config);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();

  Result<void> init();
  void set_driver(Driver* driver) { driver_ = driver; }
  // Runs until the driver is finished and no connection is busy, or until `deadline_ns` or *abort, when
  // it closes everything and waits for the closes at most kAbortGrace.
  void run(std::int64_t deadline_ns, const std::atomic<bool>& abort);

  Conn& conn(std::uint32_t index) { return conns_[index]; }
  std::uint32_t size() const { return static_cast<std::uint32_t>(conns_.size()); }
  const EngineStats& stats() const { return stats_; }
  bool aborting() const { return aborting_; }
  bool nodelay_active() const { return config_.nodelay && sockopt_ok_; }

  // Opens a socket and connects it (binding a source address first when configured). Ends in
  // on_connected and, later, on_closed; or in on_closed alone. Ignored while aborting.
  void connect(Conn& conn);
  void send(Conn& conn, std::string_view bytes);
  // Append to the returned buffer, then flush(): saves a copy of large frames.
  std::vector<std::uint8_t>& out(Conn& conn) { return conn.queued; }
  void flush(Conn& conn);
  void close(Conn& conn);
  void add_timer(const Timer& timer) { timers_.push(timer); }

 private:
  enum class Op : std::uint8_t { kIgnore, kSocket, kBind, kSockopt, kConnect, kRecv, kSend, kClose };

  Result<void> setup_ring();
  Result<void> setup_buffers();
  io_uring_sqe* sqe();
  static std::uint64_t tag(const Conn& conn, Op op) {
    return (std::uint64_t{conn.index} << 8) | std::uint8_t(op);
  }

  void loop_once(std::int64_t now);
  void wait(std::int64_t now);
  void fire_timers(std::int64_t now);
  void begin_abort();
  void dispatch(const io_uring_cqe& cqe);
  void on_socket(Conn& conn, int res);
  void start_connect(Conn& conn);
  void set_option(Conn& conn, int level, int name);
  void on_connect_step(Conn& conn, Op op, int res);
  void arm_recv(Conn& conn);
  void on_recv(Conn& conn, const io_uring_cqe& cqe);
  void start_send(Conn& conn);
  void on_send(Conn& conn, int res);
  void begin_close(Conn& conn, int error, bool eof);
  void maybe_finish_close(Conn& conn);
  void on_close(Conn& conn);
  void recycle(std::uint16_t bid);
  void publish_buffers();
  void flush_all();

  EngineConfig config_;
  io_uring ring_{};
  bool ring_ready_ = false;
  Driver* driver_ = nullptr;
  std::vector<Conn> conns_;
  std::uint32_t busy_ = 0;  // connections not idle
  std::uint32_t route_cursor_ = 0;
  bool bind_ok_ = true;
  bool sockopt_ok_ = true;  // setsockopt on direct sockets (IORING_OP_URING_CMD) works here
  bool aborting_ = false;
  std::int64_t abort_until_ = 0;
  __kernel_timespec connect_ts_{};

  io_uring_buf_ring* buf_ring_ = nullptr;
  std::uint8_t* buffers_ = nullptr;
  unsigned recycled_ = 0;  // added to the ring, not yet published

  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint32_t> waiting_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  EngineStats stats_;
};

}  // namespace ringhub::stress
