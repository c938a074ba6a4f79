// ConnectionLifecycle: takes a shard's connections through open -> draining -> closing -> freed. A
// drain writes what is queued (and any last words), sends FIN and waits for the client's EOF within a
// deadline; a close cancels what is in flight and frees the connection when no SQE still names it.
#pragma once

#include <liburing.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/memory_account.hpp"
#include "core/protocol.hpp"
#include "core/stats.hpp"
#include "transport/connection.hpp"
#include "transport/memory_gate.hpp"
#include "transport/sender.hpp"
#include "transport/uring/ring.hpp"

namespace ringhub {

// After an ERROR frame, how long the hub waits for the client to read it and close, so the close does
// not reset the connection before the client saw why.
inline constexpr std::chrono::milliseconds kErrorLinger{5000};

// A half-closed line client alone on the hub waits at most this long for the messages it sent just
// before its EOF to come back to it (a few mailbox hops: microseconds to milliseconds), not the whole
// shutdown grace: a message that went to a client that connected meanwhile never comes back.
inline constexpr std::chrono::milliseconds kOwnMessagesWait{250};

inline __kernel_timespec to_kernel_timespec(std::chrono::milliseconds ms) {
  return {static_cast<long long>(ms.count() / 1000), static_cast<long long>((ms.count() % 1000) * 1'000'000)};
}

// How long a draining connection may take to be written and answer the hub's FIN.
enum class DrainDeadline : std::uint8_t {
  kLinger,       // kErrorLinger: after last words (an ERROR frame or error line)
  kGrace,        // the hub's shutdown grace: a half-close, an idle close, the hub stopping
  kOwnMessages,  // kOwnMessagesWait (within the grace)
};

// What becomes of the bytes queued for a connection when it is given last words.
enum class QueuedBytes : std::uint8_t {
  kWritten,  // written first: replies and deliveries the client is owed, then the last words
  kDropped,  // dropped after what a send in flight points at: the queue is why it is closed (ERROR 6)
};

// What the lifecycle asks of the shard it serves: the protocols and the read side are the shard's.
class LifecycleEvents {
 public:
  // `conn` leaves the protocol services: nothing is delivered, forwarded or answered to it any more.
  // `was_registered`: it was live (counted, in its service's registry) until now.
  virtual void leave_services(Connection& conn, bool was_registered) = 0;
  // A line client half-closed: it leaves the line service but is still written to; returns whether
  // messages it sent may still come back to it (the shard then waits for them before its FIN).
  virtual bool half_close_line(Connection& conn) = 0;
  // Reading must restart: a connection the memory gate kept out is read again while it drains.
  virtual void resume_reading(Connection& conn) = 0;

 protected:
  ~LifecycleEvents() = default;
};

// Contract: owned by one shard and used on its thread. Connections are created and freed only here;
// a connection's SQEs are counted in its pending_ops, and it is deleted on its close completion.
class ConnectionLifecycle {
 public:
  struct Context {
    uring::Ring& ring;
    unsigned shard_index = 0;
    std::chrono::milliseconds shutdown_grace{};
    ShardCounters& counters;
    std::atomic<std::size_t>& live_connections;  // hub-wide: registered connections on every shard
    Sender& sender;
    MemoryGate& gate;
    LifecycleEvents& events;
  };
  explicit ConnectionLifecycle(const Context& context);
  ConnectionLifecycle(const ConnectionLifecycle&) = delete;
  ConnectionLifecycle& operator=(const ConnectionLifecycle&) = delete;

  // A connection object for the accepted `slot`, listed but not yet registered.
  Connection& create(std::uint32_t slot, AssemblyAccounting* assembly, MemoryAccount* memory);
  // Counts `conn` live unless the hub already has `max_connections` or `shard_full`; returns whether it
  // did (then `conn` is registered and its service must add it).
  bool try_register(Connection& conn, std::size_t max_connections, bool shard_full);

  // Stops reading input, writes what is queued, sends FIN, waits for the client's EOF until `deadline`.
  // A client still taking bytes when the deadline passes gets another shutdown grace, and so on while
  // it reads (until the hub stops): it is not the one that is not reading, so what it is owed is not cut.
  // `last_words` (an ERROR frame or error line) follow what is queued, or replace it (`queued`). Only an
  // open connection begins a drain.
  void begin_drain(Connection& conn, DrainDeadline deadline, std::string_view last_words = {},
                   QueuedBytes queued = QueuedBytes::kWritten);
  // Ends `conn` with ERROR `code`, then a drain; what was queued for it is written first, except for a
  // slow consumer (ERROR 6), whose queue is dropped. A line connection, which the hub ends this way only
  // for not reading, gets `error slow consumer` instead.
  void close_with_error(Connection& conn, protocol::ErrorCode code);
  // After a line client's EOF: it leaves the line service but is still written to while it drains.
  // With nobody else live, the messages it sent just before its EOF come back to it (the sender is
  // always a candidate), so its FIN waits for them, within kOwnMessagesWait.
  void begin_half_closed_line_drain(Connection& conn);
  // Sends FIN once a draining connection has nothing left to write (else asks the sender to write).
  void continue_drain(Connection& conn);
  // Cancels what `conn` has in flight and closes its slot once nothing names it.
  void begin_close(Connection& conn);
  // Closes the slot of a closing connection whose last op has come back.
  void maybe_finish_close(Connection& conn);
  // An op that named `conn` has ended (a send, a hold on it): a draining connection may now send FIN,
  // a closing one be closed.
  void after_op(Connection& conn) {
    continue_drain(conn);
    maybe_finish_close(conn);
  }
  // Queues `text` for `conn`; closes it when memory has run out (it cannot be answered).
  void send_text(Connection& conn, std::string_view text);
  // The hub is stopping: connections already draining get the grace rather than a longer linger, and
  // a half-closed line client stops waiting for its own messages (nothing more is forwarded).
  void stop();

  // Completions of the lifecycle's own ops.
  void on_shutdown(Connection& conn, const io_uring_cqe& cqe);
  void on_timer(Connection& conn, const io_uring_cqe& cqe);
  void on_close(Connection& conn, const io_uring_cqe& cqe);

  Connection::AllList& connections() { return all_; }
  // Connection objects alive (registered or not): a stopping shard finishes when this is 0.
  std::size_t objects() const { return objects_; }
  // Of those, the ones no longer counted as connected: refused, or draining and closing.
  std::size_t closing() const { return objects_ - registered_; }

 private:
  void unregister(Connection& conn);
  void drain(Connection& conn, DrainDeadline deadline, std::string_view last_words, QueuedBytes queued);
  static bool awaits_own_messages(const Connection& conn);
  void arm_deadline(Connection& conn, const __kernel_timespec* after);
  bool still_reading(const Connection& conn) const;
  const __kernel_timespec* timespec_of(DrainDeadline deadline) const;

  uring::Ring& ring_;
  const unsigned shard_index_;
  ShardCounters& counters_;
  std::atomic<std::size_t>& live_connections_;
  Sender& sender_;
  MemoryGate& gate_;
  LifecycleEvents& events_;
  Connection::AllList all_;
  std::size_t objects_ = 0;
  std::size_t registered_ = 0;  // objects counted in live_connections_ by this shard
  bool stopping_ = false;       // the hub is stopping: a drain's deadline is final
  // The kernel reads a timeout's timespec when the SQE is submitted: these live as long as the shard.
  __kernel_timespec linger_ts_{};
  __kernel_timespec grace_ts_{};
  __kernel_timespec own_messages_ts_{};
  std::vector<std::uint8_t> error_frame_;  // scratch for close_with_error
};

}  // namespace ringhub
