// Test fixture for hub integration tests: a real Hub in this process on an ephemeral loopback port,
// clients from the client library (or plain sockets where a test needs one), and polling helpers that wait on
// hub counters (no sleeps).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "clients/cpp/relay_client.hpp"
#include "tests/transport/socket_relay_client.hpp"
#include "transport/hub.hpp"

namespace ringhub::testing {

// Small enough for a test on 2 cores; tests that need more say so.
inline HubConfig test_config(unsigned shards = 1) {
  HubConfig config;
  config.relay_port = 0;
  config.line_port = 0;
  config.admin_port = 0;
  config.shards = shards;
  config.max_connections = 10'000;
  config.recv_buffer_count = 256;
  config.shutdown_grace = std::chrono::milliseconds(500);
  return config;
}

// Polls `done` until it holds or `limit` passes; returns whether it held. Condition-based waiting:
// the limit is a failure bound, not a synchronisation delay.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

class HubTest : public ::testing::Test {
 protected:
  void start_hub(const HubConfig& config) {
    auto started = Hub::start(config);
    ASSERT_TRUE(started.ok()) << started.error().message;
    hub_ = std::move(*started);
  }

  client::RelayClient connect() { return connect_with<client::RelayClient>(); }
  // The plain-socket client, for tests that need the socket itself (tests/transport/socket_relay_client.hpp).
  SocketRelayClient connect_socket() { return connect_with<SocketRelayClient>(); }

  // A connected client and its id.
  template <typename Client>
  struct PeerOf {
    Client client;
    protocol::UserId id;
  };
  using Peer = PeerOf<client::RelayClient>;
  using SocketPeer = PeerOf<SocketRelayClient>;
  Peer connect_peer() { return peer_of(connect()); }
  SocketPeer connect_socket_peer() { return peer_of(connect_socket()); }

  HubStats stats() const { return hub_->stats(); }

  // Waits until the hub counts `n` open relay connections.
  bool wait_connections(std::uint64_t n) {
    return eventually([&] { return hub_->stats().connections == n; });
  }

  void TearDown() override {
    if (hub_) {
      hub_->stop();
    }
  }

  std::unique_ptr<Hub> hub_;

 private:
  template <typename Client>
  Client connect_with() {
    auto c = Client::connect("127.0.0.1", hub_->relay_port());
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    return std::move(*c);
  }
  template <typename Client>
  PeerOf<Client> peer_of(Client c) {
    auto id = c.identity();
    EXPECT_TRUE(id.ok()) << (id.ok() ? "" : id.error().message);
    return PeerOf<Client>{std::move(c), id.ok() ? *id : 0};
  }
};

inline std::vector<std::uint8_t> bytes_of(std::string_view s) {
  return {s.begin(), s.end()};
}

}  // namespace ringhub::testing
