// AsyncLineClient: many self-healing line-protocol clients on one thread and one io_uring (a
// uring::ClientLoop). Each runs core's LineSession: it sends `message X`, answers every `message Y`, and
// settles once `ok X` comes back or its attempts run out. run_line_client wraps one of them for simple
// programs; ringhub-stress's line mode runs thousands per thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "clients/cpp/loop_options.hpp"
#include "core/line_session.hpp"
#include "core/result.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::client {

// The engine's sizes are LoopOptions': by default 8 receive buffers of 16 KiB, shared by all clients (a
// long hub line spans several).
struct AsyncLineOptions : LoopOptions {
  // Where clients connect. An attempt whose connect fails tries the next address, within what is left
  // of connect_timeout_ns, before it counts as failed.
  std::vector<uring::SocketAddress> hubs;
  // Where each attempt starts: kInTurn at the first address (a host's addresses in preference order);
  // kSpread at the next (hub address, source address) pair in turn, for a load generator that spreads
  // its connections over several of each.
  enum class Start : std::uint8_t { kInTurn, kSpread } start_at = Start::kInTurn;
  std::uint32_t clients = 1;  // client slots, indexed 0..clients-1
  LineSessionConfig session;  // the rules every client follows (timeouts, attempts, backoff)
  std::int64_t connect_timeout_ns = 5'000'000'000;
  // Seeds the backoff jitter; 0 mixes the clock, the pid and loop_index, so that clients cut off
  // together (one hub restart) do not come back in step.
  std::uint64_t seed = 0;
};

// What happens to the clients, called on the loop's thread from inside run() or run_until(). Only
// on_settled must be implemented; the rest are for programs that count or steer.
class LineEvents {
 public:
  virtual ~LineEvents() = default;
  // How long to hold the `ok Y` for a `message Y` that just arrived (0: answer at once).
  virtual std::int64_t ok_delay_ns(std::uint32_t client) {
    (void)client;
    return 0;
  }
  // Whether a line that is no answer to the client's own traffic keeps its connection (see LineSurprise).
  virtual bool keep_after(std::uint32_t client, LineSurprise what, std::string_view line) {
    (void)client, (void)what, (void)line;
    return true;
  }
  virtual void on_attempt(std::uint32_t client, unsigned attempt) { (void)client, (void)attempt; }
  virtual void on_connected(std::uint32_t client) { (void)client; }
  virtual void on_answered(std::uint32_t client) { (void)client; }  // `ok X` came: closing follows
  virtual void on_closed(std::uint32_t client, const uring::CloseInfo& info) { (void)client, (void)info; }
  // An attempt failed; `backoff_ns` is the wait before the next, or nullopt when the client gives up.
  virtual void on_attempt_failed(std::uint32_t client, const Error& why,
                                 std::optional<std::int64_t> backoff_ns) {
    (void)client, (void)why, (void)backoff_ns;
  }
  // The client is done (got `ok X`) or failed: session(client) tells which, with its counts.
  virtual void on_settled(std::uint32_t client) = 0;
};

// Contract: create() and every other call on one thread. Destroyed there too, or anywhere once run()
// has returned with every socket closed.
class AsyncLineClient final : private uring::ClientDriver, private LineSessionIo {
 public:
  static Result<std::unique_ptr<AsyncLineClient>> create(AsyncLineOptions options, LineEvents& events);
  AsyncLineClient(const AsyncLineClient&) = delete;
  AsyncLineClient& operator=(const AsyncLineClient&) = delete;
  ~AsyncLineClient() override;

  // Starts client `client` with its X (not empty, no newline, no trailing "\r", fits a hub line) at
  // `at_ns` on the uring::now_ns() clock (0, or a time past: at once). Ignored for a client already
  // started.
  void start(std::uint32_t client, std::string x, std::int64_t at_ns = 0);
  // Settles an unsettled client as failed with `why` and closes its connection; no retry follows.
  void give_up(std::uint32_t client, Error why);
  // Null before start().
  const LineSession* session(std::uint32_t client) const;
  bool idle(std::uint32_t client) const;  // no socket open or closing
  std::uint32_t size() const { return static_cast<std::uint32_t>(sessions_.size()); }
  std::uint32_t settled_count() const { return settled_; }

  // Runs until every started client has settled and every socket is closed, or until `deadline_ns` or
  // *abort: then every connection closes (at most a short grace), and each client still unsettled
  // fails with "stopped before `ok X` came". For a program that runs one batch of clients: once stopped
  // by its deadline or *abort, the client takes no new work.
  void run(std::int64_t deadline_ns, const std::atomic<bool>& abort);
  // Runs until done() holds or `deadline_ns` passes (negative: no limit); returns whether done() held.
  bool run_until(std::int64_t deadline_ns, const std::function<bool()>& done);
  const uring::ClientLoopStats& stats() const { return loop_.stats(); }

 private:
  // Timer kinds: the delayed start, then each LineTimer shifted by one.
  static constexpr std::uint32_t kStart = 0;

  AsyncLineClient(AsyncLineOptions options, LineEvents& events);

  // uring::ClientDriver
  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_drained(uring::ClientConn& conn) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  bool finished() const override { return settled_ == started_; }

  // LineSessionIo
  void connect(std::uint32_t tag) override;
  void send(std::uint32_t tag, std::string_view bytes) override;
  void close(std::uint32_t tag) override;
  void arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) override;
  std::size_t unsent_bytes(std::uint32_t tag) const override;
  std::int64_t ok_delay_ns(std::uint32_t tag) override { return events_.ok_delay_ns(tag); }
  std::uint64_t random(std::uint32_t tag) override;
  bool keep_after(std::uint32_t tag, LineSurprise what, std::string_view line) override {
    return events_.keep_after(tag, what, line);
  }
  void attempt_failed(std::uint32_t tag, const Error& why, std::optional<std::int64_t> backoff_ns) override {
    events_.on_attempt_failed(tag, why, backoff_ns);
  }
  void settled(std::uint32_t tag) override;

  struct Slot {
    std::optional<LineSession> session;
    std::uint32_t first_route = 0;         // where this attempt started (see AsyncLineOptions::Start)
    std::uint32_t route = 0;               // the address this attempt is trying
    std::int64_t connect_deadline_ns = 0;  // when this attempt stops trying further addresses
  };

  AsyncLineOptions options_;
  LineEvents& events_;
  uring::ClientLoop loop_;
  std::vector<Slot> sessions_;
  std::mt19937_64 rng_;  // the backoff jitter
  std::uint32_t started_ = 0;
  std::uint32_t settled_ = 0;
  std::uint32_t route_cursor_ = 0;  // Start::kSpread: the next attempt's first route
  bool tearing_down_ = false;       // the destructor runs: events go nowhere
  std::thread::id owner_;           // the thread that made the ring, the only one that may drive it
};

}  // namespace ringhub::client
