// Tests for clients/cpp/async_line_client: many line clients on one thread against a fake hub (a plain
// listening socket whose script runs in a thread). The rules of one client are core's LineSession,
// tested in tests/core; these test what the library adds: many clients at once, the events, the hub's
// addresses tried in turn, and stopping a run.
#include "clients/cpp/async_line_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/line_protocol.hpp"
#include "tests/clients/cpp/fake_hub_socket.hpp"

namespace ringhub::client {
namespace {

using client::fake_hub::bind_loopback;
using client::fake_hub::FakeHubTest;

constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kTestLimitNs = 10'000 * kMs;  // far past what a passing test needs
constexpr std::uint32_t kClients = 16;

// One line without its "\n", read a byte at a time; nullopt on EOF or the read limit.
std::optional<std::string> read_line(int fd) {
  std::string line;
  for (std::string c = fake_hub::read_exact<std::string>(fd, 1); !c.empty();
       c = fake_hub::read_exact<std::string>(fd, 1)) {
    if (c[0] == '\n') {
      return line;
    }
    line += c;
  }
  return std::nullopt;
}

// Client i's X. (Built by appending: GCC 12 warns falsely on "x" + std::to_string(i).)
std::string x_of(std::uint32_t i) {
  std::string x = "x";
  x += std::to_string(i);
  return x;
}

uring::SocketAddress loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return uring::SocketAddress(addr);
}

// Counts every event, per kind.
struct CountingEvents final : LineEvents {
  void on_attempt(std::uint32_t, unsigned attempt) override { attempts.push_back(attempt); }
  void on_connected(std::uint32_t) override { ++connected; }
  void on_answered(std::uint32_t) override { ++answered; }
  void on_closed(std::uint32_t, const uring::CloseInfo&) override { ++closed; }
  void on_settled(std::uint32_t client) override { settled.push_back(client); }

  std::vector<unsigned> attempts;
  int connected = 0;
  int answered = 0;
  int closed = 0;
  std::vector<std::uint32_t> settled;
};

class AsyncLineClientTest : public FakeHubTest {
 protected:
  void SetUp() override {
    FakeHubTest::SetUp();
    ::listen(listen_fd_, 64);  // every client connects at once
  }
  ~AsyncLineClientTest() override {
    for (const int fd : accepted_) {
      ::close(fd);
    }
  }

  // The next connection, its reads bounded; -1 once the listener is shut down.
  int accept_client() {
    sockaddr_in peer{};
    socklen_t peer_len = sizeof peer;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_CLOEXEC);
    if (fd >= 0) {
      peers_.insert(ntohl(peer.sin_addr.s_addr));
      const timeval limit{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      accepted_.push_back(fd);
    }
    return fd;
  }

  // A hub that answers each of `n` connections' `message X` with `ok X` (or says nothing, if silent).
  void serve(std::uint32_t n, bool silent) {
    hub_ = std::thread([this, n, silent] {
      for (std::uint32_t i = 0; i < n; ++i) {
        const int fd = accept_client();
        if (fd < 0) {
          return;
        }
        const std::optional<std::string> line = read_line(fd);
        if (!line) {
          return;
        }
        lines_.insert(*line);
        if (!silent) {
          std::string ok;
          append_ok_line(ok, parse_line(*line).payload);
          fake_hub::write_all(fd, ok);
        }
      }
    });
  }

  AsyncLineOptions options(std::uint32_t clients, std::vector<uring::SocketAddress> hubs) const {
    AsyncLineOptions o;
    o.hubs = std::move(hubs);
    o.clients = clients;
    o.session.max_attempts = 1;
    o.session.endpoint = "127.0.0.1:";
    o.session.endpoint += std::to_string(port_);
    return o;
  }

  // kClients clients of the fake hub, each started with its X; null (and a failure) if create fails.
  std::unique_ptr<AsyncLineClient> start_all(LineEvents& events) {
    auto made = AsyncLineClient::create(options(kClients, {loopback(port_)}), events);
    if (!made) {
      ADD_FAILURE() << made.error().message;
      return nullptr;
    }
    for (std::uint32_t i = 0; i < kClients; ++i) {
      (*made)->start(i, x_of(i));
    }
    return std::move(*made);
  }

  std::vector<int> accepted_;  // the script's until join_hub()
  std::set<std::string> lines_;
  std::set<std::uint32_t> peers_;  // the clients' source addresses, host order
};

sockaddr_in source(std::uint32_t host_order_address) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(host_order_address);
  return addr;
}

TEST_F(AsyncLineClientTest, ManyClientsOnOneThreadEachGetTheirOwnOk) {
  serve(kClients, false);
  CountingEvents events;
  std::unique_ptr<AsyncLineClient> made = start_all(events);
  ASSERT_NE(made, nullptr);
  AsyncLineClient& client = *made;
  ASSERT_TRUE(client.run_until(uring::now_ns() + kTestLimitNs, [&] {
    return client.settled_count() == kClients && [&] {
      for (std::uint32_t i = 0; i < kClients; ++i) {
        if (!client.idle(i)) {
          return false;
        }
      }
      return true;
    }();
  }));
  join_hub();
  for (std::uint32_t i = 0; i < kClients; ++i) {
    EXPECT_EQ(client.session(i)->state(), LineSession::State::kDone) << i;
    EXPECT_EQ(lines_.count("message " + x_of(i)), 1U) << i;
  }
  EXPECT_EQ(events.attempts, std::vector<unsigned>(kClients, 1));
  EXPECT_EQ(events.connected, static_cast<int>(kClients));
  EXPECT_EQ(events.answered, static_cast<int>(kClients));
  EXPECT_EQ(events.closed, static_cast<int>(kClients));
  EXPECT_EQ(events.settled.size(), kClients);
}

TEST_F(AsyncLineClientTest, AnAddressThatRefusesIsPassedOverWithinTheSameAttempt) {
  const auto [refusing_fd, refusing_port] = bind_loopback(false);  // bound, not listening: refuses
  ASSERT_GE(refusing_fd, 0);
  serve(1, false);
  CountingEvents events;
  auto made = AsyncLineClient::create(options(1, {loopback(refusing_port), loopback(port_)}), events);
  ASSERT_TRUE(made) << made.error().message;
  AsyncLineClient& client = **made;
  client.start(0, "only");
  ASSERT_TRUE(client.run_until(uring::now_ns() + kTestLimitNs, [&] { return client.session(0)->settled(); }));
  join_hub();
  ::close(refusing_fd);
  EXPECT_EQ(client.session(0)->state(), LineSession::State::kDone);
  EXPECT_EQ(client.session(0)->counts().attempts, 1U);  // one attempt, max_attempts is 1
  EXPECT_EQ(events.closed, 1);  // the refused connect is not reported: the attempt went on
}

TEST_F(AsyncLineClientTest, RunStoppedByItsDeadlineFailsTheUnansweredClients) {
  serve(kClients, true);
  CountingEvents events;
  std::unique_ptr<AsyncLineClient> made = start_all(events);
  ASSERT_NE(made, nullptr);
  AsyncLineClient& client = *made;
  client.start(0, "started twice: ignored");
  const std::atomic<bool> abort{false};
  // Long enough for every message to reach the silent hub, short of the 5 s ok timeout.
  client.run(uring::now_ns() + 1000 * kMs, abort);
  join_hub();
  EXPECT_EQ(client.settled_count(), kClients);
  for (std::uint32_t i = 0; i < kClients; ++i) {
    ASSERT_NE(client.session(i)->failure(), nullptr) << i;
    EXPECT_NE(client.session(i)->failure()->message.find("stopped before"), std::string::npos);
    EXPECT_TRUE(client.idle(i));
  }
  EXPECT_EQ(lines_.size(), kClients);
  EXPECT_EQ(lines_.count("message x0"), 1U);  // the second start() of client 0 changed nothing
  EXPECT_EQ(client.session(0)->failure()->message, "stopped before `ok X` came (1 attempt made)");
  EXPECT_EQ(events.answered, 0);
}

TEST_F(AsyncLineClientTest, GivingUpSettlesOnceAndClosesTheConnection) {
  serve(1, true);
  CountingEvents events;
  auto made = AsyncLineClient::create(options(1, {loopback(port_)}), events);
  ASSERT_TRUE(made) << made.error().message;
  AsyncLineClient& client = **made;
  client.start(0, "x");
  ASSERT_TRUE(client.run_until(uring::now_ns() + kTestLimitNs, [&] { return events.connected == 1; }));
  client.give_up(0, make_error("enough"));
  client.give_up(0, make_error("again"));
  ASSERT_TRUE(client.run_until(uring::now_ns() + kTestLimitNs, [&] { return client.idle(0); }));
  join_hub();
  EXPECT_EQ(events.settled, std::vector<std::uint32_t>{0});
  EXPECT_EQ(client.session(0)->failure()->message, "enough");
}

// Spread: attempts go out over every source address in turn (a load generator's 4-tuples); in turn:
// every attempt starts at the first.
TEST_F(AsyncLineClientTest, SpreadStartsEachAttemptAtTheNextSourceAddress) {
  for (const auto start_at : {AsyncLineOptions::Start::kSpread, AsyncLineOptions::Start::kInTurn}) {
    serve(kClients, false);
    CountingEvents events;
    AsyncLineOptions o = options(kClients, {loopback(port_)});
    o.sources = {source(INADDR_LOOPBACK), source(INADDR_LOOPBACK + 1)};
    o.start_at = start_at;
    auto made = AsyncLineClient::create(o, events);
    ASSERT_TRUE(made) << made.error().message;
    AsyncLineClient& client = **made;
    for (std::uint32_t i = 0; i < kClients; ++i) {
      client.start(i, x_of(i));
    }
    ASSERT_TRUE(
        client.run_until(uring::now_ns() + kTestLimitNs, [&] { return client.settled_count() == kClients; }));
    join_hub();
    const std::set<std::uint32_t> expected =
        start_at == AsyncLineOptions::Start::kSpread
            ? std::set<std::uint32_t>{INADDR_LOOPBACK, INADDR_LOOPBACK + 1}
            : std::set<std::uint32_t>{INADDR_LOOPBACK};
    EXPECT_EQ(peers_, expected);
    peers_.clear();
  }
}

TEST(AsyncLineClientOptions, BadOptionsAreRefusedAtCreate) {
  CountingEvents events;
  AsyncLineOptions no_hub;
  EXPECT_FALSE(AsyncLineClient::create(no_hub, events));
  AsyncLineOptions no_clients;
  no_clients.hubs = {loopback(1)};
  no_clients.clients = 0;
  EXPECT_FALSE(AsyncLineClient::create(no_clients, events));
}

}  // namespace
}  // namespace ringhub::client
