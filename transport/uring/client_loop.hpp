// ClientLoop: the client side of io_uring under ringhub-stress and ringhub-perf: one thread, one Ring,
// direct sockets made by the ring, multishot recv on a BufferRing, one send in flight per socket and a
// timer heap. A ClientDriver (a harness mode) decides what each connection says; the loop owns sockets.
#pragma once

#include <liburing.h>
#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "transport/uring/buffer_ring.hpp"
#include "transport/uring/event_loop.hpp"
#include "transport/uring/ring.hpp"
#include "transport/uring/socket_address.hpp"
#include "transport/uring/stream.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub::uring {

// CLOCK_MONOTONIC in nanoseconds: every deadline and latency in the harness uses it.
std::int64_t now_ns();

enum class ConnPhase : std::uint8_t {
  kIdle,        // no socket
  kSocket,      // socket_direct_alloc in flight
  kConnecting,  // [bind ->] connect -> link timeout in flight
  kOpen,        // connected, multishot recv armed
  kClosing,     // cancelling what is in flight, then close_direct
};

// How a connection ended, handed to ClientDriver::on_closed.
struct CloseInfo {
  bool was_open = false;   // its connect succeeded
  bool requested = false;  // ClientLoop::close asked for it (not the hub, an error or a timeout)
  bool eof = false;        // the hub closed its side first
  int error = 0;           // errno of the first failure (ETIMEDOUT for a connect past its link timeout)
};

// One client's connection, reused across reconnects; the Stream base is its socket as the engine sees
// it. Contract: owned by one ClientLoop and its thread. Aligned so its address can carry a completion
// kind (transport/uring/tag.hpp).
struct alignas(kTagAlignment) ClientConn : Stream {
  std::uint32_t index = 0;  // position in the loop's table (and in the driver's state arrays)
  ConnPhase phase = ConnPhase::kIdle;
  std::uint32_t gen = 0;                // bumped at every close: timers of an earlier connection are stale
  std::uint32_t route = 0;              // which (source, hub) address pair this connection uses
  __kernel_timespec connect_timeout{};  // the link timeout of its connect: the kernel reads it at submit
  bool dirty = false;                   // on the loop's list of connections with bytes to send
  bool read_paused = false;             // pause_reading: no recv is armed until resume_reading
  bool recv_cancelled = false;          // pause_reading cancelled the armed recv; its last completion is due
  bool close_wanted = false;            // close asked while the socket was still being created
  // errno of a failed send: nothing more is written, but the connection reads on to its end, so what
  // the peer sent before it went (an ERROR frame saying why) still reaches the driver.
  int write_error = 0;
  CloseInfo ending;
  std::vector<std::uint8_t> queued;   // bytes behind the send in flight
  std::vector<std::uint8_t> sending;  // the send in flight's bytes: stay put until its CQE
  std::size_t sent = 0;               // bytes of `sending` already written (short sends resume here)
};

// A userspace timer; ClientDriver::on_timer gets it back when due.
struct ClientTimer {
  std::int64_t due_ns = 0;
  std::uint32_t conn = 0;
  std::uint32_t gen = 0;  // ClientConn::gen when armed: compare to drop timers of a closed connection
  std::uint32_t kind = 0;
  std::uint32_t arg = 0;
  bool operator>(const ClientTimer& other) const { return due_ns > other.due_ns; }
};

// What a mode does with connections. Called on the loop's thread only.
class ClientDriver {
 public:
  virtual ~ClientDriver() = default;
  virtual void on_connected(ClientConn& conn) = 0;
  virtual void on_bytes(ClientConn& conn, std::span<const std::uint8_t> bytes) = 0;
  virtual void on_drained(ClientConn& conn) { (void)conn; }  // every queued byte is written
  // Every connect() ends here exactly once, the socket closed and the slot free again.
  virtual void on_closed(ClientConn& conn, const CloseInfo& info) = 0;
  virtual void on_timer(const ClientTimer& timer) = 0;
  virtual void on_iteration() {}  // once per loop iteration, before the wait
  virtual bool finished() const = 0;
};

struct ClientLoopConfig {
  unsigned index = 0;
  std::uint32_t conns = 0;        // connection slots (clients) this loop drives
  unsigned table_size = 0;        // direct descriptors: at most RLIMIT_NOFILE
  unsigned buffer_count = 0;      // provided receive buffers (power of two, <= 32768)
  std::uint32_t buffer_size = 0;  // bytes each
  BufferRing::Residency buffer_residency = BufferRing::Residency::kPopulated;
  std::vector<SocketAddress> hubs;   // destinations, used in turn
  std::vector<sockaddr_in> sources;  // source addresses to bind (port 0) before an IPv4 connect
  std::int64_t connect_timeout_ns = 0;
  // A fully written send buffer larger than this is freed rather than kept for the next send: small
  // for many idle clients, large for a few publishers of big messages (no page faults per message).
  std::size_t keep_send_capacity = std::size_t{256} << 10;
  bool nodelay = true;  // TCP_NODELAY through IORING_OP_URING_CMD when the kernel has it
  // The ring: a harness loop's SQ holds one iteration's connects for thousands of clients, its CQ their
  // completions; a client of a few connections needs a few dozen of each.
  unsigned sq_entries = 4096;
  unsigned cq_entries = 65536;
  // kAnyThread for a loop whose owner moves between threads (used by one at a time).
  TaskRun task_run = TaskRun::kDeferred;
};

// Sizes the descriptor table and the ring for a library's loop of config.conns connections and
// config.buffer_count receive buffers: a slot each plus a few spare, and the SQEs one iteration of all of
// them can need (connect with its options and timeout, recv, send, cancels, close). A harness of
// thousands of clients keeps the defaults instead.
void size_for_connections(ClientLoopConfig& config);

// Figures the loop keeps about itself, read by other threads for progress.
struct ClientLoopStats {
  std::atomic<std::uint64_t> open{0};  // connections open now
  std::atomic<std::uint64_t> cq_overflows{0};
  std::atomic<std::uint64_t> enobufs{0};  // multishot recvs stopped for lack of buffers
  std::atomic<std::uint64_t> bind_failures{0};
  std::atomic<std::uint64_t> connect_failures{0};
  std::atomic<std::int64_t> max_timer_lag_ns{0};  // how late a timer fired at worst: loop saturation
};

// Contract: constructed anywhere; init(), run() and everything else on one thread (the ring's issuer).
class ClientLoop final : private LoopHandler {
 public:
  // What a completion of this loop's ring is; the owner in its tag is always the ClientConn.
  enum class Op : std::uint8_t { kIgnore, kSocket, kBind, kSockopt, kConnect, kRecv, kSend, kClose };
  static_assert(kind_fits(Op::kClose));
  static_assert(is_unwatched_kind(Op::kIgnore));

  explicit ClientLoop(ClientLoopConfig config);
  ClientLoop(const ClientLoop&) = delete;
  ClientLoop& operator=(const ClientLoop&) = delete;
  ~ClientLoop();

  Result<void> init();
  void set_driver(ClientDriver* driver) { driver_ = driver; }
  // Runs until the driver is finished and no connection is busy, or until `deadline_ns` or *abort, when
  // it closes everything and waits for the closes at most kAbortGrace.
  void run(std::int64_t deadline_ns, const std::atomic<bool>& abort);
  // Serves the ring until `done()` holds (checked on entry and after every batch of completions and
  // timers) or `deadline_ns` passes; returns whether `done()` held. Unlike run() it never closes
  // anything: a library's event loop, driven for as long as its caller waits. A deadline already past
  // still handles what is ready (a poll). Before it returns, every send that can start is submitted
  // (bytes queued behind a send in flight follow at the next call). A negative deadline waits without
  // limit.
  bool run_until(std::int64_t deadline_ns, const std::function<bool()>& done);

  ClientConn& conn(std::uint32_t index) { return conns_[index]; }
  const ClientConn& conn(std::uint32_t index) const { return conns_[index]; }
  std::uint32_t size() const { return static_cast<std::uint32_t>(conns_.size()); }
  const ClientLoopStats& stats() const { return stats_; }
  bool aborting() const { return aborting_; }
  bool nodelay_active() const { return config_.nodelay && sockopt_ok_; }

  // Opens a socket and connects it (binding a source address first when configured). Ends in
  // on_connected and, later, on_closed; or in on_closed alone. Ignored while aborting.
  void connect(ClientConn& conn);
  // The same, to config.hubs[route % hubs.size()] (a client trying each address of a name in turn),
  // within `timeout_ns` if positive, else config.connect_timeout_ns (what an attempt has left).
  void connect(ClientConn& conn, std::uint32_t route, std::int64_t timeout_ns = 0);
  void send(ClientConn& conn, std::string_view bytes);
  // Append to the returned buffer, then flush(): saves a copy of large frames.
  std::vector<std::uint8_t>& out(ClientConn& conn) { return conn.queued; }
  void flush(ClientConn& conn);
  // Bytes queued on `conn` that the kernel has not taken yet (never will, after a write_error).
  static std::size_t unsent_bytes(const ClientConn& conn) {
    return conn.queued.size() + (conn.sending.size() - conn.sent);
  }
  void close(ClientConn& conn);
  // Stops reading `conn` (its bytes wait in the socket, and TCP pushes back on the peer) until
  // resume_reading: for a library whose caller has not taken what was already read.
  void pause_reading(ClientConn& conn);
  void resume_reading(ClientConn& conn);
  void add_timer(const ClientTimer& timer) { timers_.push(timer); }

 private:
  io_uring_sqe* sqe() { return loop_.ring().next_sqe(); }
  static std::uint64_t tag(const ClientConn& conn, Op op) { return uring::tag(&conn, op); }
  const SocketAddress& hub_of(const ClientConn& conn) const {
    return config_.hubs[conn.route % config_.hubs.size()];
  }

  void wait(std::int64_t now, std::int64_t until = -1);
  bool leave_run_until(bool result);
  void fire_timers(std::int64_t now);
  void begin_abort();
  void on_completion(const io_uring_cqe& cqe) override;
  void on_buffers_back(Stream& stream) override;
  void on_socket(ClientConn& conn, int res);
  void start_connect(ClientConn& conn);
  void set_option(ClientConn& conn, int level, int name);
  void on_connect_step(ClientConn& conn, Op op, int res);
  void arm_recv(ClientConn& conn);
  void on_recv(ClientConn& conn, const io_uring_cqe& cqe);
  void start_send(ClientConn& conn);
  void on_send(ClientConn& conn, int res);
  void stop_writing(ClientConn& conn, int error);
  void begin_close(ClientConn& conn, int error, bool eof);
  void maybe_finish_close(ClientConn& conn);
  void on_close(ClientConn& conn);
  void start_sends();

  ClientLoopConfig config_;
  EventLoop loop_;
  ClientDriver* driver_ = nullptr;
  std::vector<ClientConn> conns_;
  std::uint32_t busy_ = 0;  // connections not idle
  std::uint32_t route_cursor_ = 0;
  bool sockopt_ok_ = true;  // setsockopt on direct sockets (IORING_OP_URING_CMD) works here
  bool aborting_ = false;
  std::int64_t abort_until_ = 0;

  std::vector<std::uint32_t> dirty_;
  std::priority_queue<ClientTimer, std::vector<ClientTimer>, std::greater<>> timers_;
  ClientLoopStats stats_;
};

}  // namespace ringhub::uring
