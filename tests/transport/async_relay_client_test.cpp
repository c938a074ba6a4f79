// The asynchronous relay client library (clients/cpp/async_relay_client.hpp) against a real hub: many
// connections driven by one thread, DELIVERs whole in one receive buffer and split across several, the
// hub's ERROR, refused connects, and name resolution with a fallback address.
#include "clients/cpp/async_relay_client.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "clients/cpp/hub_address.hpp"
#include "clients/cpp/relay_client.hpp"
#include "core/frame_codec.hpp"
#include "tests/transport/hub_fixture.hpp"

namespace ringhub::testing {
namespace {

using client::AsyncRelayClient;
using client::AsyncRelayOptions;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

// A failure bound for every wait, never a delay.
constexpr std::chrono::milliseconds kWait = std::chrono::seconds(20);

// Records every event, per connection.
struct Recorder final : client::RelayEvents {
  struct Received {
    UserId sender;
    Bytes body;
  };
  struct PerConn {
    bool opened = false;
    std::optional<UserId> id;
    std::vector<std::vector<UserId>> lists;
    std::vector<Received> deliveries;
    std::vector<std::pair<std::uint8_t, std::string>> hub_errors;
    std::optional<Error> closed;
  };
  std::map<std::uint32_t, PerConn> conns;

  void on_open(std::uint32_t conn) override { conns[conn].opened = true; }
  void on_identity(std::uint32_t conn, UserId id) override { conns[conn].id = id; }
  void on_list(std::uint32_t conn, std::span<const UserId> others) override {
    conns[conn].lists.emplace_back(others.begin(), others.end());
  }
  void on_delivery(std::uint32_t conn, UserId sender, std::span<const std::uint8_t> body) override {
    conns[conn].deliveries.push_back({sender, Bytes(body.begin(), body.end())});
  }
  void on_hub_error(std::uint32_t conn, std::uint8_t code, std::string_view reason) override {
    conns[conn].hub_errors.emplace_back(code, std::string(reason));
  }
  void on_closed(std::uint32_t conn, const Error& why) override { conns[conn].closed = why; }
};

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

Bytes patterned(std::size_t size, std::uint8_t seed) {
  Bytes out(size);
  for (std::size_t i = 0; i < size; ++i) {
    out[i] = static_cast<std::uint8_t>(seed + i * 7);
  }
  return out;
}

// A stand-in hub on a plain socket: it accepts one connection, writes an ERROR frame, and resets the
// connection (SO_LINGER 0), so the client's next write fails while the ERROR still waits to be read.
class ResettingHub {
 public:
  ResettingHub() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = loopback(0);
    socklen_t length = sizeof address;
    ok_ = listener_ >= 0 && ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
          ::listen(listener_, 4) == 0 &&
          ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) == 0;
    port_ = ntohs(address.sin_port);
  }
  ResettingHub(const ResettingHub&) = delete;
  ResettingHub& operator=(const ResettingHub&) = delete;
  ~ResettingHub() { ::close(listener_); }

  bool ok() const { return ok_; }
  std::uint16_t port() const { return port_; }

  // Accepts the client (already connected in the backlog), sends ERROR `code`, and resets.
  bool refuse_and_reset(protocol::ErrorCode code) const {
    const int conn = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      return false;
    }
    Bytes frame;
    codec::append_error(frame, code, "refused by the test");
    const bool written = ::write(conn, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size());
    const linger reset{1, 0};
    ::setsockopt(conn, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    ::close(conn);
    return written;
  }

  // Accepts the client and writes `bytes` (framed or not), then closes normally.
  bool write_and_close(const Bytes& bytes) const {
    const int conn = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      return false;
    }
    const bool written = ::write(conn, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
    ::close(conn);
    return written;
  }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  bool ok_ = false;
};

class AsyncRelayClientTest : public HubTest {
 protected:
  std::unique_ptr<AsyncRelayClient> make_client(std::uint32_t connections, std::uint16_t port) {
    AsyncRelayOptions options;
    options.hubs = {loopback(port)};
    options.connections = connections;
    options.recv_buffers = 16;
    options.recv_buffer_size = 16 << 10;  // a 1 MiB body spans many buffers: the gathered path
    auto made = AsyncRelayClient::create(std::move(options), events_);
    EXPECT_TRUE(made) << made.error().message;
    return made ? std::move(*made) : nullptr;
  }

  // One connection opened to `hub` (nullptr, and a test failure, if it does not open).
  std::unique_ptr<AsyncRelayClient> open_one(const ResettingHub& hub);

  Recorder events_;
};

// One thread, 48 connections on two shards: every id is distinct, LIST sees the other 47, a ring of
// relays (bodies from 0 bytes to 1 MiB) arrives intact at the right receiver from the right sender, and
// every close is reported as asked for.
TEST_F(AsyncRelayClientTest, OneThreadDrivesManyConnections) {
  start_hub(test_config(2));
  constexpr std::uint32_t kConns = 48;
  auto client = make_client(kConns, hub_->relay_port());
  ASSERT_NE(client, nullptr);
  for (std::uint32_t c = 0; c < kConns; ++c) {
    client->open(c);
  }
  auto count = [&](auto&& has) {
    std::uint32_t n = 0;
    for (const auto& [conn, state] : events_.conns) {
      n += has(state) ? 1 : 0;
    }
    return n;
  };
  ASSERT_TRUE(client->run_until([&] { return count([](auto& s) { return s.opened; }) == kConns; }, kWait));
  for (std::uint32_t c = 0; c < kConns; ++c) {
    ASSERT_TRUE(client->identity(c));
  }
  ASSERT_TRUE(
      client->run_until([&] { return count([](auto& s) { return s.id.has_value(); }) == kConns; }, kWait));
  std::set<UserId> ids;
  for (auto& [conn, state] : events_.conns) {
    ids.insert(*state.id);
  }
  EXPECT_EQ(ids.size(), kConns);

  ASSERT_TRUE(client->list(0));
  ASSERT_TRUE(client->run_until([&] { return !events_.conns[0].lists.empty(); }, kWait));
  EXPECT_EQ(events_.conns[0].lists[0].size(), kConns - 1);

  const std::size_t sizes[] = {0, 1, 100, 16 << 10, 100'000, protocol::kMaxBodySize};
  for (std::uint32_t c = 0; c < kConns; ++c) {
    const UserId to = *events_.conns[(c + 1) % kConns].id;
    ASSERT_TRUE(client->relay(c, std::vector<UserId>{to}, patterned(sizes[c % std::size(sizes)], c)));
  }
  ASSERT_TRUE(client->run_until(
      [&] { return count([](auto& s) { return !s.deliveries.empty(); }) == kConns; }, kWait));
  for (std::uint32_t c = 0; c < kConns; ++c) {
    const std::uint32_t from = (c + kConns - 1) % kConns;
    const auto& got = events_.conns[c].deliveries;
    ASSERT_EQ(got.size(), 1U) << "connection " << c;
    EXPECT_EQ(got[0].sender, *events_.conns[from].id);
    EXPECT_EQ(got[0].body, patterned(sizes[from % std::size(sizes)], static_cast<std::uint8_t>(from)));
  }

  for (std::uint32_t c = 0; c < kConns; ++c) {
    client->close(c);
  }
  ASSERT_TRUE(client->run_until([&] { return count([](auto& s) { return s.closed.has_value(); }) == kConns; },
                                kWait));
  for (auto& [conn, state] : events_.conns) {
    EXPECT_EQ(state.closed->message, "closed");
    EXPECT_TRUE(client->is_idle(conn));
  }
  EXPECT_TRUE(wait_connections(0));
}

TEST_F(AsyncRelayClientTest, HubErrorComesBeforeTheClose) {
  start_hub(test_config());
  auto client = make_client(1, hub_->relay_port());
  ASSERT_NE(client, nullptr);
  client->open(0);
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].opened; }, kWait));
  const Bytes unknown_type{0x00, 0, 0, 0, 0, 0, 0, 0};
  ASSERT_TRUE(client->send_raw(0, unknown_type));
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].closed.has_value(); }, kWait));
  ASSERT_EQ(events_.conns[0].hub_errors.size(), 1U);
  EXPECT_EQ(events_.conns[0].hub_errors[0].first,
            static_cast<std::uint8_t>(protocol::ErrorCode::kUnknownType));
  EXPECT_EQ(events_.conns[0].closed->domain, ErrorDomain::kNone);
  EXPECT_EQ(events_.conns[0].closed->message, "hub closed the connection");
  EXPECT_TRUE(client->identity(0).error().is_system(ENOTCONN)) << "requests need an open connection";
}

TEST_F(AsyncRelayClientTest, RefusedConnectIsReportedWithoutAnOpen) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address = loopback(0);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::uint16_t port = ntohs(address.sin_port);
  auto client = make_client(1, port);
  ::close(listener);  // bound and closed: nothing listens on the port
  ASSERT_NE(client, nullptr);
  client->open(0);
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].closed.has_value(); }, kWait));
  EXPECT_FALSE(events_.conns[0].opened);
  EXPECT_TRUE(events_.conns[0].closed->is_system(ECONNREFUSED)) << events_.conns[0].closed->message;
}

TEST_F(AsyncRelayClientTest, RelayLimitsAreCheckedBeforeAnythingIsSent) {
  start_hub(test_config());
  auto client = make_client(1, hub_->relay_port());
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->relay(0, std::vector<UserId>{}, Bytes{}).error().is_system(EINVAL));
  EXPECT_TRUE(client->relay(0, std::vector<UserId>{1}, Bytes(protocol::kMaxBodySize + 1))
                  .error()
                  .is_system(EMSGSIZE));
  EXPECT_TRUE(client->relay(0, std::vector<UserId>{1}, Bytes{1}).error().is_system(ENOTCONN));
}

// While reading is paused nothing is delivered; resumed, the relay arrives. A paused connection has no
// recv in flight, and closing it still ends in on_closed.
TEST_F(AsyncRelayClientTest, PausedReadingHoldsDeliveriesAndStillCloses) {
  start_hub(test_config());
  auto client = make_client(2, hub_->relay_port());
  ASSERT_NE(client, nullptr);
  client->open(0);
  client->open(1);
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].opened && events_.conns[1].opened; }, kWait));
  ASSERT_TRUE(client->identity(0));
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].id.has_value(); }, kWait));
  client->pause_reading(0);
  ASSERT_TRUE(client->relay(1, std::vector<UserId>{*events_.conns[0].id}, patterned(100, 1)));
  ASSERT_TRUE(client->run_until([&] { return client->unsent_bytes(1) == 0; }, kWait));
  ASSERT_TRUE(eventually([&] {
    return stats().deliveries >= 1;
  }));  // the DELIVER has left the hub  // the reply and the DELIVER left the hub
  EXPECT_FALSE(client->run_until([&] { return !events_.conns[0].deliveries.empty(); }, 200ms))
      << "a delivery came through paused reading";
  client->resume_reading(0);
  ASSERT_TRUE(client->run_until([&] { return !events_.conns[0].deliveries.empty(); }, kWait));
  EXPECT_EQ(events_.conns[0].deliveries[0].body, patterned(100, 1));

  client->pause_reading(0);
  client->run_until([] { return false; }, 100ms);  // the pause's cancel completes: nothing in flight
  client->close(0);
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].closed.has_value(); }, kWait));
  EXPECT_EQ(events_.conns[0].closed->message, "closed");
}

// A zero timeout polls: what is ready is handled, so a caller may drive the loop in steps of its own.
TEST_F(AsyncRelayClientTest, ZeroTimeoutPollsAndMakesProgress) {
  start_hub(test_config());
  auto client = make_client(1, hub_->relay_port());
  ASSERT_NE(client, nullptr);
  client->open(0);
  const auto until = std::chrono::steady_clock::now() + kWait;
  bool identified = false;
  bool asked = false;
  while (!identified && std::chrono::steady_clock::now() < until) {
    if (client->run_until([&] { return events_.conns[0].id.has_value(); }, 0ms)) {
      identified = true;
    } else if (events_.conns[0].opened && !asked) {
      asked = client->identity(0).ok();
    } else {
      std::this_thread::sleep_for(1ms);  // the caller's own work between polls
    }
  }
  EXPECT_TRUE(identified);
}

// The blocking client's "no limit" works for connect too (the engine bounds every connect, so no
// limit stands for kLongestConnect). A receiver that keeps sending while 12 MiB of deliveries wait for
// it reads them only up to its buffer cap while it sends, and later gets every one whole and in order.
TEST_F(AsyncRelayClientTest, BlockingClientWithoutLimitsAndWithFullBuffers) {
  start_hub(test_config());
  auto sender = client::RelayClient::connect("127.0.0.1", hub_->relay_port(), client::kWaitForever);
  ASSERT_TRUE(sender) << sender.error().message;
  auto receiver = client::RelayClient::connect("127.0.0.1", hub_->relay_port(), client::kWaitForever);
  ASSERT_TRUE(receiver) << receiver.error().message;
  auto sender_id = sender->identity();
  auto receiver_id = receiver->identity();
  ASSERT_TRUE(sender_id && receiver_id);
  constexpr int kBodies = 12;
  for (int i = 0; i < kBodies; ++i) {
    ASSERT_TRUE(sender->relay(std::vector<UserId>{*receiver_id}, patterned(protocol::kMaxBodySize, i)));
  }
  for (int i = 0; i < 50; ++i) {  // the receiver's loop runs while it sends, reading what has come
    ASSERT_TRUE(receiver->relay(std::vector<UserId>{*sender_id}, patterned(10, i)));
  }
  for (int i = 0; i < kBodies; ++i) {
    auto delivery = receiver->next_delivery(kWait);
    ASSERT_TRUE(delivery) << delivery.error().message;
    EXPECT_EQ(delivery->sender, *sender_id);
    EXPECT_EQ(delivery->body, patterned(protocol::kMaxBodySize, static_cast<std::uint8_t>(i)))
        << "body " << i;
  }
  for (int i = 0; i < 50; ++i) {
    auto delivery = sender->next_delivery(kWait);
    ASSERT_TRUE(delivery) << delivery.error().message;
    EXPECT_EQ(delivery->body, patterned(10, static_cast<std::uint8_t>(i)));
  }
}

// A name may resolve to ::1 before 127.0.0.1, where the hub listens: open() takes the address to try,
// and an IPv6 one gets an IPv6 socket. Here [::1] finds nothing (or no IPv6 at all), then 127.0.0.1 opens.
TEST_F(AsyncRelayClientTest, EachAddressCanBeTriedInTurn) {
  start_hub(test_config());
  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  v6.sin6_port = htons(hub_->relay_port());
  v6.sin6_addr = in6addr_loopback;
  AsyncRelayOptions options;
  options.hubs = {uring::SocketAddress(reinterpret_cast<const sockaddr*>(&v6), sizeof v6),
                  loopback(hub_->relay_port())};
  auto made = AsyncRelayClient::create(std::move(options), events_);
  ASSERT_TRUE(made) << made.error().message;
  AsyncRelayClient& client = **made;
  client.open(0, 0);
  ASSERT_TRUE(client.run_until([&] { return events_.conns[0].closed.has_value(); }, kWait));
  EXPECT_FALSE(events_.conns[0].opened) << "the hub listens on IPv4 only";
  events_.conns[0].closed.reset();
  client.open(0, 1);
  ASSERT_TRUE(client.run_until([&] { return events_.conns[0].opened; }, kWait));
  ASSERT_TRUE(client.identity(0));
  ASSERT_TRUE(client.run_until([&] { return events_.conns[0].id.has_value(); }, kWait));
}

std::unique_ptr<AsyncRelayClient> AsyncRelayClientTest::open_one(const ResettingHub& hub) {
  EXPECT_TRUE(hub.ok());
  auto client = make_client(1, hub.port());
  if (client == nullptr) {
    return nullptr;
  }
  client->open(0);
  if (!client->run_until([&] { return events_.conns[0].opened; }, kWait)) {
    ADD_FAILURE() << "the connection to the stand-in hub did not open";
    return nullptr;
  }
  return client;
}

// The hub's ERROR reaches the caller even when the write that follows it fails first. With deferred
// task running, the failed send completes at submit time, before the recv that holds the ERROR: the
// connection must go on reading to its end instead of closing at the failed send.
TEST_F(AsyncRelayClientTest, HubErrorIsReadEvenWhenAWriteFailsFirst) {
  ResettingHub hub;
  auto client = open_one(hub);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(hub.refuse_and_reset(protocol::ErrorCode::kUnknownType));
  std::this_thread::sleep_for(50ms);  // the ERROR and the reset have arrived; the client has not looked
  ASSERT_TRUE(client->send_raw(0, Bytes(64, 0x01)));
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].closed.has_value(); }, kWait));
  ASSERT_EQ(events_.conns[0].hub_errors.size(), 1U);
  EXPECT_EQ(events_.conns[0].hub_errors[0].first,
            static_cast<std::uint8_t>(protocol::ErrorCode::kUnknownType));
  EXPECT_EQ(events_.conns[0].hub_errors[0].second, "refused by the test");
}

// The same with reading paused by the caller: the failed write leaves the connection open for reading,
// and once the caller reads again the ERROR comes, then the close, as after any ERROR.
TEST_F(AsyncRelayClientTest, FailedWriteWaitsForPausedReadingToResume) {
  ResettingHub hub;
  auto client = open_one(hub);
  ASSERT_NE(client, nullptr);
  client->pause_reading(0);
  client->run_until([] { return false; }, 100ms);  // the pause's cancel completes: no recv in flight
  ASSERT_TRUE(hub.refuse_and_reset(protocol::ErrorCode::kUnknownType));
  ASSERT_TRUE(client->send_raw(0, Bytes(64, 0x01)));
  EXPECT_FALSE(client->run_until([&] { return events_.conns[0].closed.has_value(); }, 200ms))
      << "closed before the caller read what the hub sent";
  EXPECT_FALSE(client->is_idle(0));
  const Result<void> after = client->identity(0);
  ASSERT_FALSE(after) << "a request was queued on a connection whose write failed";
  EXPECT_TRUE(after.error().is_system(ECONNRESET) || after.error().is_system(EPIPE)) << after.error().message;
  client->resume_reading(0);
  ASSERT_TRUE(client->run_until([&] { return events_.conns[0].closed.has_value(); }, kWait));
  ASSERT_EQ(events_.conns[0].hub_errors.size(), 1U);
  EXPECT_EQ(events_.conns[0].closed->message, "hub closed the connection");
}

// The blocking client's relay() that fails to write reports the hub's ERROR, not the errno.
TEST_F(AsyncRelayClientTest, BlockingRelayIntoAResetReportsTheHubError) {
  ResettingHub hub;
  ASSERT_TRUE(hub.ok());
  auto connected = client::RelayClient::connect("127.0.0.1", hub.port());
  ASSERT_TRUE(connected) << connected.error().message;
  ASSERT_TRUE(hub.refuse_and_reset(protocol::ErrorCode::kUnknownType));
  std::this_thread::sleep_for(50ms);
  auto sent = connected->relay(std::vector<UserId>{1}, patterned(100, 1));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().domain, ErrorDomain::kProtocol) << sent.error().message;
}

// The blocking wrapper resolves the name and tries each address the same way.
TEST_F(AsyncRelayClientTest, BlockingClientResolvesAName) {
  start_hub(test_config());
  auto addresses = client::resolve_hub("localhost", hub_->relay_port());
  ASSERT_TRUE(addresses) << addresses.error().message;
  ASSERT_FALSE(addresses->empty());
  auto connected = client::RelayClient::connect("localhost", hub_->relay_port());
  ASSERT_TRUE(connected) << connected.error().message;
  auto id = connected->identity();
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_NE(*id, 0U);
}

}  // namespace
}  // namespace ringhub::testing

namespace ringhub::testing {
namespace {

// Records the streamed and pacing events too, and can act on them.
struct StreamRecorder final : client::RelayEvents {
  struct PerConn {
    std::optional<UserId> id;
    std::vector<std::pair<UserId, std::uint32_t>> begins;
    std::vector<std::size_t> pieces;  // sizes of the body pieces, in order
    Bytes body;                       // the pieces, joined
    int ends = 0;
    int whole = 0;  // on_delivery calls: never, when streaming
    int sent = 0;
    std::size_t read = 0;
    std::vector<std::uint32_t> timers;
    std::optional<Error> closed;
  };
  std::map<std::uint32_t, PerConn> conns;
  int iterations = 0;
  AsyncRelayClient* client = nullptr;
  bool close_on_first_delivery = false;

  void on_open(std::uint32_t conn) override { (void)client->identity(conn); }
  void on_identity(std::uint32_t conn, UserId id) override { conns[conn].id = id; }
  void on_list(std::uint32_t, std::span<const UserId>) override {}
  void on_delivery(std::uint32_t conn, UserId, std::span<const std::uint8_t>) override {
    ++conns[conn].whole;
  }
  void on_delivery_begin(std::uint32_t conn, UserId sender, std::uint32_t size) override {
    conns[conn].begins.emplace_back(sender, size);
    if (close_on_first_delivery) {
      client->close(conn);
    }
  }
  void on_delivery_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) override {
    conns[conn].pieces.push_back(bytes.size());
    conns[conn].body.insert(conns[conn].body.end(), bytes.begin(), bytes.end());
  }
  void on_delivery_end(std::uint32_t conn) override { ++conns[conn].ends; }
  void on_hub_error(std::uint32_t, std::uint8_t, std::string_view) override {}
  void on_closed(std::uint32_t conn, const Error& why) override { conns[conn].closed = why; }
  void on_sent(std::uint32_t conn) override { ++conns[conn].sent; }
  void on_read(std::uint32_t conn, std::size_t bytes) override { conns[conn].read += bytes; }
  void on_timer(std::uint32_t conn, std::uint32_t kind) override { conns[conn].timers.push_back(kind); }
  void on_iteration() override { ++iterations; }
};

class AsyncRelayStreamTest : public HubTest {
 protected:
  // Two identified connections, streaming, with 16 KiB receive buffers (a 1 MiB body comes in pieces).
  void open_two() {
    AsyncRelayOptions options;
    options.hubs = {loopback(hub_->relay_port())};
    options.connections = 2;
    options.recv_buffers = 16;
    options.recv_buffer_size = 16 << 10;
    options.stream_deliveries = true;
    auto made = AsyncRelayClient::create(std::move(options), events_);
    ASSERT_TRUE(made) << made.error().message;
    client_ = std::move(*made);
    events_.client = client_.get();
    client_->open(0);
    client_->open(1);
    ASSERT_TRUE(client_->run_until([&] { return events_.conns[0].id && events_.conns[1].id; }, kWait));
  }

  StreamRecorder events_;
  std::unique_ptr<AsyncRelayClient> client_;
};

// A 1 MiB body written in place arrives as begin, pieces that join to it, end; never whole.
TEST_F(AsyncRelayStreamTest, RelayInPlaceArrivesStreamedInPieces) {
  start_hub(test_config());
  open_two();
  const Bytes body = patterned(protocol::kMaxBodySize, 3);
  const std::vector<UserId> to{*events_.conns[1].id};
  Result<std::span<std::uint8_t>> room = client_->relay_in_place(0, to, body.size());
  ASSERT_TRUE(room) << room.error().message;
  ASSERT_EQ(room->size(), body.size());
  std::copy(body.begin(), body.end(), room->begin());
  ASSERT_TRUE(client_->run_until([&] { return events_.conns[1].ends == 1; }, kWait));
  const auto& got = events_.conns[1];
  ASSERT_EQ(got.begins.size(), 1U);
  EXPECT_EQ(got.begins[0], std::make_pair(*events_.conns[0].id, static_cast<std::uint32_t>(body.size())));
  EXPECT_GT(got.pieces.size(), 1U);
  EXPECT_EQ(got.body, body);
  EXPECT_EQ(got.whole, 0);
  EXPECT_GE(got.read, body.size());
  EXPECT_GE(events_.conns[0].sent, 2);  // the IDENTITY request, then the RELAY
  EXPECT_GT(events_.iterations, 0);
  EXPECT_FALSE(client_->relay_in_place(0, {}, 1));  // the same limits as relay()
}

// After close() the rest of what was read is not reported: only on_closed follows.
TEST_F(AsyncRelayStreamTest, NoEventForAConnectionAfterItsClose) {
  start_hub(test_config());
  open_two();
  events_.close_on_first_delivery = true;
  const std::vector<UserId> to{*events_.conns[1].id};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client_->relay(0, to, patterned(100, static_cast<std::uint8_t>(i))));
  }
  ASSERT_TRUE(client_->run_until([&] { return events_.conns[1].closed.has_value(); }, kWait));
  EXPECT_EQ(events_.conns[1].begins.size(), 1U);
  EXPECT_TRUE(events_.conns[1].pieces.empty());
  EXPECT_EQ(events_.conns[1].ends, 0);
  EXPECT_TRUE(client_->close_info(1).requested);
  EXPECT_TRUE(client_->close_info(1).was_open);
}

TEST_F(AsyncRelayStreamTest, TimersFireWithTheirConnectionAndKind) {
  start_hub(test_config());
  open_two();
  client_->add_timer(1, uring::now_ns() + 20'000'000, 7);
  client_->add_timer(0, uring::now_ns(), 3);
  ASSERT_TRUE(client_->run_until([&] { return !events_.conns[1].timers.empty(); }, kWait));
  EXPECT_EQ(events_.conns[0].timers, std::vector<std::uint32_t>{3});
  EXPECT_EQ(events_.conns[1].timers, std::vector<std::uint32_t>{7});
}

// run(): until finished() holds and every socket is closed; a deadline stops it for good.
TEST_F(AsyncRelayStreamTest, RunServesUntilFinishedAndAStoppedClientOpensNothing) {
  start_hub(test_config());
  open_two();
  client_->close(0);
  client_->close(1);
  const std::atomic<bool> abort{false};
  client_->run(uring::now_ns() + 20'000'000'000, abort, [&] { return events_.conns[1].closed.has_value(); });
  EXPECT_TRUE(client_->is_idle(0));
  EXPECT_TRUE(client_->is_idle(1));
  EXPECT_FALSE(client_->stopping());

  client_->open(0);
  client_->run(uring::now_ns(), abort, [] { return false; });  // the deadline is now: stop
  EXPECT_TRUE(client_->stopping());
  EXPECT_TRUE(client_->is_idle(0));
  client_->open(1);
  EXPECT_TRUE(client_->is_idle(1));  // ignored once stopping
}

// A malformed hub frame closes the connection with EPROTO and the frame's fault, streamed or not;
// nothing after it is reported.
TEST_F(AsyncRelayClientTest, MalformedHubFrameClosesWithEproto) {
  for (const bool streamed : {false, true}) {
    ResettingHub hub;
    ASSERT_TRUE(hub.ok());
    Recorder events;
    AsyncRelayOptions options;
    options.hubs = {loopback(hub.port())};
    options.stream_deliveries = streamed;
    auto made = AsyncRelayClient::create(std::move(options), events);
    ASSERT_TRUE(made) << made.error().message;
    AsyncRelayClient& client = **made;
    client.open(0);
    ASSERT_TRUE(client.run_until([&] { return events.conns[0].opened; }, kWait));
    Bytes bytes;
    codec::append_error(bytes, protocol::ErrorCode::kUnknownType, "first");  // well formed: reported
    bytes.insert(bytes.end(), {0x99, 0, 0, 0, 0, 0, 0, 0});                  // type 0x99: no such frame
    codec::append_error(bytes, protocol::ErrorCode::kUnknownType, "after");  // never read
    ASSERT_TRUE(hub.write_and_close(bytes));
    ASSERT_TRUE(client.run_until([&] { return events.conns[0].closed.has_value(); }, kWait));
    const Error& why = *events.conns[0].closed;
    EXPECT_TRUE(why.is_system(EPROTO)) << why.message;
    EXPECT_NE(why.message.find("malformed"), std::string::npos) << why.message;
    ASSERT_EQ(events.conns[0].hub_errors.size(), 1U);
    EXPECT_EQ(events.conns[0].hub_errors[0].second, "first");
  }
}

// A client made on one thread and destroyed on another with a connection open (a harness joins its
// engine threads, then frees their clients): the destructor must not drive a ring it does not own,
// which would end the process.
TEST_F(AsyncRelayClientTest, DestroyedOnAnotherThreadWithAConnectionOpen) {
  start_hub(test_config());
  std::unique_ptr<AsyncRelayClient> client;
  std::thread maker([&] {
    client = make_client(1, hub_->relay_port());
    if (client != nullptr) {
      client->open(0);
      client->run_until([&] { return events_.conns[0].opened; }, kWait);
    }
  });
  maker.join();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(events_.conns[0].opened);
  client.reset();  // here, on the test's thread
  EXPECT_TRUE(wait_connections(0));
}

}  // namespace
}  // namespace ringhub::testing
