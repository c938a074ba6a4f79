// AsyncRelayClient: the relay protocol's client library on the io_uring engine (uring::ClientLoop). One
// thread drives many connections to a hub: requests are queued without blocking, and replies, deliveries
// and closes come back as events while the caller runs the loop. RelayClient wraps it for simple programs.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "clients/cpp/loop_options.hpp"
#include "core/client_frame_reader.hpp"
#include "core/protocol.hpp"
#include "core/result.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::client {

// The longest a connect may take, standing in for "no limit": the engine bounds every connect.
inline constexpr std::chrono::milliseconds kLongestConnect = std::chrono::hours(24);

// What happens on the connections, called on the loop's thread from inside run_until(). `conn` is the
// connection's index. Replies come in request order; DELIVERs may come between them. Every view is
// valid only during the call.
class RelayEvents {
 public:
  virtual ~RelayEvents() = default;
  virtual void on_open(std::uint32_t conn) { (void)conn; }
  virtual void on_identity(std::uint32_t conn, protocol::UserId id) = 0;
  virtual void on_list(std::uint32_t conn, std::span<const protocol::UserId> others) = 0;
  virtual void on_delivery(std::uint32_t conn, protocol::UserId sender,
                           std::span<const std::uint8_t> body) = 0;
  // With AsyncRelayOptions::stream_deliveries, a DELIVER comes as these three instead of on_delivery:
  // its body in the pieces it arrived in (views into the receive buffers: nothing is gathered), for a
  // program that checks or forwards bodies as they stream in.
  virtual void on_delivery_begin(std::uint32_t conn, protocol::UserId sender, std::uint32_t size) {
    (void)conn, (void)sender, (void)size;
  }
  virtual void on_delivery_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) {
    (void)conn, (void)bytes;
  }
  virtual void on_delivery_end(std::uint32_t conn) { (void)conn; }
  // The hub refused something and is closing the connection: on_closed follows. `reason` is the hub's
  // text as sent (untrusted: printable_reason() before showing it).
  virtual void on_hub_error(std::uint32_t conn, std::uint8_t code, std::string_view reason) = 0;
  // Every open() ends here exactly once. `why`: kNone "closed" when close() asked for it, kNone "hub
  // closed the connection" at EOF, ETIMEDOUT or the connect's errno when it never opened, EPROTO for a
  // malformed hub frame, or the errno of a failed read or write.
  virtual void on_closed(std::uint32_t conn, const Error& why) = 0;

  // For programs that pace or watch their traffic:
  virtual void on_sent(std::uint32_t conn) { (void)conn; }  // every byte queued on conn is written
  // Bytes read from the hub, before they are cut into frames (a progress meter's view).
  virtual void on_read(std::uint32_t conn, std::size_t bytes) { (void)conn, (void)bytes; }
  virtual void on_timer(std::uint32_t conn, std::uint32_t kind) { (void)conn, (void)kind; }  // add_timer
  virtual void on_iteration() {}  // once per loop iteration, before it waits
};

// The engine's sizes are LoopOptions': by default 64 receive buffers of 64 KiB (a DELIVER split across
// buffers is assembled in its own vector unless deliveries are streamed).
struct AsyncRelayOptions : LoopOptions {
  AsyncRelayOptions() {
    recv_buffers = 64;
    recv_buffer_size = std::uint32_t{64} << 10;
  }
  std::vector<uring::SocketAddress> hubs;  // where open() connects (resolve_hub() gives them for a name)
  std::uint32_t connections = 1;           // connection slots, indexed 0..connections-1
  std::chrono::milliseconds connect_timeout{5000};  // zero or negative: kLongestConnect
  std::size_t max_list_reply_length = kDefaultMaxListReplyLength;
  bool stream_deliveries = false;  // see RelayEvents::on_delivery_begin
  // kAnyThread when the client object moves between threads (used by one at a time).
  uring::TaskRun task_run = uring::TaskRun::kDeferred;
};

// Contract: create() and every other call on one thread (or, with TaskRun::kAnyThread, one thread at a
// time). Requests on a connection that is not open fail with ENOTCONN, and after a failed write with
// its errno.
class AsyncRelayClient final : private uring::ClientDriver {
 public:
  static Result<std::unique_ptr<AsyncRelayClient>> create(AsyncRelayOptions options, RelayEvents& events);
  AsyncRelayClient(const AsyncRelayClient&) = delete;
  AsyncRelayClient& operator=(const AsyncRelayClient&) = delete;
  // Closes every connection, waiting at most kTeardownWait for the kernel to finish with them; no
  // event is delivered from here.
  ~AsyncRelayClient() override;

  // Connects slot `conn` to hubs[route % hubs.size()], from sources[route / hubs.size() % sources.size()]
  // when there are sources; on_open or on_closed follows. Ignored unless the slot is idle, or once
  // run() is stopping.
  void open(std::uint32_t conn, std::uint32_t route = 0);
  // No reply, delivery or hub error for `conn` follows, not even from the bytes already read: only
  // on_closed (and the timers the program armed for it).
  void close(std::uint32_t conn);

  Result<void> identity(std::uint32_t conn);
  Result<void> list(std::uint32_t conn);
  // Checks the limits the hub enforces first (1..255 receivers, a body up to 1 MiB), so a bad call fails
  // here with a clear message instead of costing the connection.
  Result<void> relay(std::uint32_t conn, std::span<const protocol::UserId> receivers,
                     std::span<const std::uint8_t> body);
  // A RELAY whose body the caller writes in place: the returned span, valid until the next call on this
  // client, is the body's room in the send queue (nothing is copied). Same checks as relay().
  Result<std::span<std::uint8_t>> relay_in_place(std::uint32_t conn,
                                                 std::span<const protocol::UserId> receivers,
                                                 std::size_t body_size);
  // Bytes as they are, framed or not (for tests of malformed input).
  Result<void> send_raw(std::uint32_t conn, std::span<const std::uint8_t> bytes);
  // Calls RelayEvents::on_timer(conn, kind) at `at_ns` on the uring::now_ns() clock.
  void add_timer(std::uint32_t conn, std::int64_t at_ns, std::uint32_t kind);

  // Stops reading `conn` until resume_reading: what the hub sends next waits in TCP, which pushes back
  // on the hub (and, past its --max-outbound-bytes, gets this connection cut as a slow consumer). A
  // paused connection whose write fails stays open until reading resumes (or close()), so what the hub
  // sent before it went is not lost.
  void pause_reading(std::uint32_t conn);
  void resume_reading(std::uint32_t conn);

  bool is_open(std::uint32_t conn) const;
  bool is_idle(std::uint32_t conn) const;  // no socket: never opened, or closed and reported
  // Bytes queued on `conn` that the kernel has not taken yet.
  std::size_t unsent_bytes(std::uint32_t conn) const;
  // Whether a write on `conn` failed (the hub is gone): nothing more is sent, but the connection reads
  // on, so an ERROR the hub sent first is still reported, until on_closed.
  bool write_failed(std::uint32_t conn) const;
  // How `conn`'s last connection ended (valid from its on_closed on), and whether it stopped reading in
  // the middle of a hub frame.
  const uring::CloseInfo& close_info(std::uint32_t conn) const;
  bool mid_frame(std::uint32_t conn) const;

  // Runs the loop until `done()` holds or `timeout` passes (negative: no limit); returns whether `done()`
  // held. Events are delivered from inside this call.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  // For a program that runs one batch: serves until finished() holds and every socket is closed, or
  // until `deadline_ns` or *abort, when it closes every connection (waiting a short grace) and stops:
  // stopping() is true from then on and open() does nothing.
  void run(std::int64_t deadline_ns, const std::atomic<bool>& abort, const std::function<bool()>& finished);
  bool stopping() const { return loop_.aborting(); }
  const uring::ClientLoopStats& stats() const { return loop_.stats(); }

 private:
  struct Connection;
  struct FrameEvents;

  AsyncRelayClient(AsyncRelayOptions options, RelayEvents& events);
  Result<void> queue(std::uint32_t conn, std::span<const std::uint8_t> bytes);

  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_drained(uring::ClientConn& conn) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  void on_iteration() override;
  bool finished() const override { return finished_ && finished_(); }

  AsyncRelayOptions options_;
  RelayEvents& events_;
  uring::ClientLoop loop_;
  std::vector<Connection> connections_;
  bool tearing_down_ = false;       // the destructor runs: events go nowhere
  std::function<bool()> finished_;  // run()'s
  std::thread::id owner_;           // the thread that made the ring
};

// The limits the hub enforces on a RELAY (1..255 receivers, a body up to 1 MiB), checked before sending:
// EINVAL or EMSGSIZE with a message that names the limit.
Result<void> check_relay_limits(std::size_t receivers, std::size_t body_size);

// The hub's ERROR reason, untrusted text on its way to a terminal: printable ASCII only.
std::string printable_reason(std::string_view reason);

}  // namespace ringhub::client
