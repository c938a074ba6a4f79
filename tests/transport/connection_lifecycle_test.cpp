// Tests for transport/connection_lifecycle on a real ring (skipped where io_uring is refused), with a
// socket pair per connection and no shard: last words then FIN then the free, the wait for a line
// client's own messages, the hub's stop shortening a linger to the grace, and the live count.
#include "transport/connection_lifecycle.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/line_protocol.hpp"
#include "transport/hub_shared.hpp"
#include "transport/op_tag.hpp"

namespace ringhub {
namespace {

constexpr unsigned kSqEntries = 64;
constexpr unsigned kCqEntries = 256;
constexpr unsigned kTableSize = 8;
constexpr std::size_t kDirectorySlots = 16;
constexpr std::chrono::milliseconds kGrace{100};
// How long a test waits for something the lifecycle must do: far beyond the grace, far below the linger.
constexpr std::chrono::milliseconds kPatience{3000};
static_assert(kPatience < kErrorLinger && kPatience > 10 * kGrace);

HubConfig config_with_grace() {
  HubConfig config;
  config.shutdown_grace = kGrace;
  return config;
}

// What the lifecycle asked of the shard it serves.
struct ServicesLog final : LifecycleEvents {
  void leave_services(Connection& conn, bool was_registered) override {
    left.emplace_back(&conn, was_registered);
  }
  bool half_close_line(Connection& conn) override {
    half_closed.push_back(&conn);
    return own_messages_may_return;
  }
  void resume_reading(Connection& conn) override { resumed.push_back(&conn); }

  std::vector<std::pair<Connection*, bool>> left;
  std::vector<Connection*> half_closed;
  std::vector<Connection*> resumed;
  bool own_messages_may_return = false;
};

struct NoGateEvents final : GateEvents {
  void on_resumed(Connection& /*conn*/) override {}
};

// The sender's reports go to the lifecycle, as on a shard.
struct SendToLifecycle final : SendEvents {
  void on_unwritable(Connection& conn) override { lifecycle->begin_close(conn); }
  void on_slow_consumer(Connection& conn) override {
    lifecycle->close_with_error(conn, protocol::ErrorCode::kSlowConsumer);
  }
  void on_send_done(Connection& conn) override { lifecycle->after_op(conn); }
  void on_notified(Connection& conn) override { lifecycle->maybe_finish_close(conn); }
  ConnectionLifecycle* lifecycle = nullptr;
};

class ConnectionLifecycleTest : public ::testing::Test {
 protected:
  ConnectionLifecycleTest()
      : shared_(config_, 1, kTableSize, kDirectorySlots, HashKey{}),
        gate_(shared_, gate_events_),
        sender_(ring_, config_, 0, shared_.counters[0], shared_.memory[0], send_events_, now_),
        lifecycle_({.ring = ring_,
                    .shard_index = 0,
                    .shutdown_grace = kGrace,
                    .counters = shared_.counters[0],
                    .live_connections = shared_.live_connections,
                    .sender = sender_,
                    .gate = gate_,
                    .events = services_}) {
    send_events_.lifecycle = &lifecycle_;
    assembly_.memory = &shared_.memory[0];
  }

  void SetUp() override {
    if (Result<void> ready = ring_.init(kSqEntries, kCqEntries, kTableSize); !ready) {
      GTEST_SKIP() << ready.error().message;
    }
  }
  void TearDown() override {
    for (const int fd : peers_) {
      ::close(fd);
    }
  }

  // A connection of `protocol` on the next slot, registered unless told not; its peer end is
  // peer_of(conn), non-blocking.
  Connection& open(Protocol protocol, bool registered = true) {
    int fds[2] = {-1, -1};
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0) << std::strerror(errno);
    const std::uint32_t slot = next_slot_++;
    EXPECT_EQ(io_uring_register_files_update(ring_.get(), slot, &fds[0], 1), 1);
    ::close(fds[0]);  // the direct descriptor is the socket's only reference: closing it ends the pair
    EXPECT_EQ(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    peers_.push_back(fds[1]);
    Connection& conn = lifecycle_.create(slot, &assembly_, &shared_.memory[0]);
    conn.protocol = protocol;
    if (registered) {
      EXPECT_TRUE(lifecycle_.try_register(conn, config_.max_connections, false));
    }
    return conn;
  }
  int peer_of(const Connection& conn) const { return peers_.at(conn.slot); }
  // Queues `text` for `conn` as a reply the hub owes it; false when memory ran out.
  bool queue_reply(Connection& conn, std::string_view text) {
    return sender_.enqueue_copy(
        conn, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), CopyReason::kReply);
  }

  // Turns the loop (flush, submit, dispatch) until `done` holds or `patience` has passed.
  bool turn_until(const std::function<bool()>& done, std::chrono::milliseconds patience = kPatience) {
    const auto give_up = std::chrono::steady_clock::now() + patience;
    while (!done()) {
      if (std::chrono::steady_clock::now() > give_up) {
        return false;
      }
      sender_.flush();
      __kernel_timespec wait{.tv_sec = 0, .tv_nsec = 20'000'000};
      const int ret = ring_.submit_and_wait(&wait);
      EXPECT_FALSE(uring::enter_failed(ret)) << std::strerror(-ret);
      ring_.reap([this](const io_uring_cqe& cqe) { dispatch(cqe); });
    }
    return true;
  }
  bool all_freed() {
    return turn_until([this] { return lifecycle_.objects() == 0; });
  }

  // Reads what the peer has now: its bytes, and whether the hub's side has ended the stream.
  std::pair<std::string, bool> drain_peer(const Connection& conn) const {
    return drain_peer_fd(peer_of(conn));
  }
  static std::pair<std::string, bool> drain_peer_fd(int fd) {
    std::string bytes;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n > 0) {
        bytes.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      return {bytes, n == 0};
    }
  }

  HubConfig config_ = config_with_grace();
  HubShared shared_;
  uring::Ring ring_;
  NoGateEvents gate_events_;
  MemoryGate gate_;
  SendToLifecycle send_events_;
  ShardTime now_{};  // the sender's clock: no test here stalls a send
  Sender sender_;
  ServicesLog services_;
  ConnectionLifecycle lifecycle_;
  AssemblyAccounting assembly_;
  std::vector<int> peers_;
  std::uint32_t next_slot_ = 0;

 private:
  void dispatch(const io_uring_cqe& cqe) {
    switch (tag_op(cqe.user_data)) {
      case Op::kSend: sender_.on_completion(*tag_owner<Connection>(cqe.user_data), cqe); return;
      case Op::kShutdown: lifecycle_.on_shutdown(*tag_owner<Connection>(cqe.user_data), cqe); return;
      case Op::kConnTimer: lifecycle_.on_timer(*tag_owner<Connection>(cqe.user_data), cqe); return;
      case Op::kClose: lifecycle_.on_close(*tag_owner<Connection>(cqe.user_data), cqe); return;
      default: return;  // cancels and timeout removals
    }
  }
};

std::string error_frame(protocol::ErrorCode code) {
  std::vector<std::uint8_t> frame;
  codec::append_error(frame, code, protocol::error_code_name(code));
  return {frame.begin(), frame.end()};
}

TEST_F(ConnectionLifecycleTest, AnErrorIsWrittenThenFinThenTheConnectionIsFreed) {
  Connection& conn = open(Protocol::kRelay);
  Connection* const address = &conn;
  ASSERT_EQ(shared_.live_connections.load(), 1U);

  lifecycle_.close_with_error(conn, protocol::ErrorCode::kFrameTimeout);
  EXPECT_EQ(conn.state, ConnState::kDraining);
  EXPECT_EQ(shared_.live_connections.load(), 0U);
  ASSERT_EQ(services_.left.size(), 1U);
  EXPECT_EQ(services_.left[0], std::make_pair(address, true));
  const int peer = peer_of(conn);

  ASSERT_TRUE(all_freed());
  const auto [bytes, ended] = drain_peer_fd(peer);
  EXPECT_EQ(bytes, error_frame(protocol::ErrorCode::kFrameTimeout));
  EXPECT_TRUE(ended);
  // The close after the drain tells the services again (a half-closed line client is forgotten
  // there), but as no longer registered: nothing is removed twice.
  ASSERT_EQ(services_.left.size(), 2U);
  EXPECT_EQ(services_.left[1], std::make_pair(address, false));
}

TEST_F(ConnectionLifecycleTest, ALineConnectionIsToldInItsOwnProtocol) {
  Connection& conn = open(Protocol::kLine);
  const int peer = peer_of(conn);
  lifecycle_.close_with_error(conn, protocol::ErrorCode::kSlowConsumer);
  ASSERT_TRUE(all_freed());
  const auto [bytes, ended] = drain_peer_fd(peer);
  EXPECT_EQ(bytes, kSlowConsumerLine);
  EXPECT_TRUE(ended);
}

TEST_F(ConnectionLifecycleTest, ASlowConsumersQueueIsDroppedForItsError) {
  Connection& conn = open(Protocol::kRelay);
  const int peer = peer_of(conn);
  const std::string queued = "bytes no send has taken yet";
  ASSERT_TRUE(queue_reply(conn, queued));
  lifecycle_.close_with_error(conn, protocol::ErrorCode::kSlowConsumer);
  ASSERT_TRUE(all_freed());
  EXPECT_EQ(drain_peer_fd(peer).first, error_frame(protocol::ErrorCode::kSlowConsumer));
  EXPECT_EQ(sender_.queued_bytes(), 0U);
}

TEST_F(ConnectionLifecycleTest, AnyOtherErrorFollowsWhatTheClientIsOwed) {
  Connection& conn = open(Protocol::kRelay);
  const int peer = peer_of(conn);
  const std::string queued = "a reply to a request before the bad frame";
  ASSERT_TRUE(queue_reply(conn, queued));
  lifecycle_.close_with_error(conn, protocol::ErrorCode::kUnknownType);
  ASSERT_TRUE(all_freed());
  EXPECT_EQ(drain_peer_fd(peer).first, queued + error_frame(protocol::ErrorCode::kUnknownType));
}

TEST_F(ConnectionLifecycleTest, AHalfClosedLineClientWaitsForItsOwnMessagesWithinTheirDeadline) {
  Connection& conn = open(Protocol::kLine);
  const int peer = peer_of(conn);
  services_.own_messages_may_return = true;
  conn.line_half_closed = true;
  conn.line_pending_bytes = 10;  // a message of its own is still on its way back

  lifecycle_.begin_half_closed_line_drain(conn);
  EXPECT_EQ(services_.half_closed.size(), 1U);
  EXPECT_TRUE(services_.left.empty());  // it stays reachable while it drains
  EXPECT_EQ(shared_.live_connections.load(), 0U);
  // Nothing is queued, yet no FIN goes before the deadline (min(kOwnMessagesWait, grace)): a timeout
  // never fires early, so half of it is a safe look.
  EXPECT_FALSE(turn_until([&] { return conn.shutdown_sent; }, kGrace / 2));
  EXPECT_FALSE(drain_peer_fd(peer).second);
  ASSERT_TRUE(all_freed());
  EXPECT_TRUE(drain_peer_fd(peer).second);
}

TEST_F(ConnectionLifecycleTest, AClientStillReadingGetsEverythingItIsOwedPastTheDeadline) {
  Connection& conn = open(Protocol::kRelay);
  const int peer = peer_of(conn);
  int small = 4096;
  ASSERT_EQ(setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  const std::string backlog(4U << 20, 'x');  // more than the pair holds: written as the peer reads
  ASSERT_TRUE(queue_reply(conn, backlog));
  lifecycle_.begin_drain(conn, DrainDeadline::kGrace);

  // The peer takes at most 128 KiB every 10 ms, so the drain outlasts the grace about three times.
  std::string received;
  bool ended = false;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (!ended && std::chrono::steady_clock::now() < give_up) {
    turn_until([] { return false; }, std::chrono::milliseconds(10));
    std::vector<char> chunk(128U << 10);
    const ssize_t n = ::read(peer, chunk.data(), chunk.size());
    if (n > 0) {
      received.append(chunk.data(), static_cast<std::size_t>(n));
    }
    ended = n == 0;
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(received.size(), backlog.size());
  EXPECT_TRUE(all_freed());
}

TEST_F(ConnectionLifecycleTest, AClientThatStopsReadingIsClosedAtTheDeadline) {
  Connection& conn = open(Protocol::kRelay);
  const int peer = peer_of(conn);
  int small = 4096;
  ASSERT_EQ(setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  ASSERT_TRUE(queue_reply(conn, std::string(1U << 20, 'x')));
  lifecycle_.begin_drain(conn, DrainDeadline::kGrace);
  EXPECT_EQ(lifecycle_.closing(), 1U);
  ASSERT_TRUE(all_freed()) << "still draining " << kPatience.count() << " ms after the grace";
  EXPECT_EQ(lifecycle_.closing(), 0U);
  const auto [bytes, ended] = drain_peer_fd(peer);
  EXPECT_LT(bytes.size(), std::size_t{1} << 20);
  EXPECT_TRUE(ended);
}

TEST_F(ConnectionLifecycleTest, StoppingShortensALingerToTheGrace) {
  Connection& conn = open(Protocol::kRelay);
  const int peer = peer_of(conn);
  int small = 4096;
  ASSERT_EQ(setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  // More than the pair can hold while the peer does not read: the drain cannot finish by itself.
  const std::vector<std::uint8_t> backlog(1U << 20, 'x');
  ASSERT_TRUE(sender_.enqueue_copy(conn, backlog, CopyReason::kReply));
  ASSERT_TRUE(turn_until([&] { return conn.send_in_flight; }));
  lifecycle_.begin_drain(conn, DrainDeadline::kLinger);  // kErrorLinger: longer than kPatience

  lifecycle_.stop();
  const auto stopped = std::chrono::steady_clock::now();
  ASSERT_TRUE(all_freed()) << "still draining " << kPatience.count() << " ms after the stop";
  EXPECT_GE(std::chrono::steady_clock::now() - stopped, kGrace / 2);  // the grace, not at once
  EXPECT_TRUE(drain_peer_fd(peer).second);
}

TEST_F(ConnectionLifecycleTest, ClosingTwiceLeavesTheServicesOnceAndADrainAfterItIsIgnored) {
  Connection& conn = open(Protocol::kRelay);
  const int peer = peer_of(conn);
  lifecycle_.begin_close(conn);
  lifecycle_.begin_close(conn);
  lifecycle_.begin_drain(conn, DrainDeadline::kGrace, "ignored");
  EXPECT_EQ(conn.state, ConnState::kClosing);
  ASSERT_TRUE(all_freed());
  EXPECT_EQ(services_.left.size(), 1U);
  const auto [bytes, ended] = drain_peer_fd(peer);
  EXPECT_TRUE(bytes.empty());
  EXPECT_TRUE(ended);
}

TEST_F(ConnectionLifecycleTest, RegistrationStopsAtTheHubLimitOrAFullShardAndKeepsTheCount) {
  Connection& first = open(Protocol::kRelay, false);
  Connection& second = open(Protocol::kRelay, false);
  Connection& third = open(Protocol::kRelay, false);
  EXPECT_TRUE(lifecycle_.try_register(first, 2, false));
  EXPECT_FALSE(lifecycle_.try_register(second, 2, true));  // the shard is full
  EXPECT_TRUE(lifecycle_.try_register(second, 2, false));
  EXPECT_FALSE(lifecycle_.try_register(third, 2, false));  // the hub is
  EXPECT_EQ(shared_.live_connections.load(), 2U);
  EXPECT_TRUE(first.registered && second.registered && !third.registered);
  EXPECT_EQ(lifecycle_.objects(), 3U);
  EXPECT_EQ(lifecycle_.closing(), 1U);  // the refused one, held until it is closed
  for (Connection* conn : {&first, &second, &third}) {
    lifecycle_.begin_close(*conn);
  }
  EXPECT_EQ(shared_.live_connections.load(), 0U);
  EXPECT_EQ(lifecycle_.closing(), 3U);
  ASSERT_TRUE(all_freed());
}

}  // namespace
}  // namespace ringhub
