// Listening sockets for the hub: one per shard on one address and port, joined by SO_REUSEPORT so
// the kernel spreads incoming connections across shards. Plain fds: there are only a few.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace ringhub {

// A bind address: an IPv4 or IPv6 literal and a port.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
};
Result<SocketAddress> parse_socket_address(const std::string& address, std::uint16_t port);

// An error naming the failed step, the address and errno; a port in use suggests `flag` (may be null).
Error socket_error(const char* what, const std::string& address, std::uint16_t port,
                   const char* flag = nullptr);

// TCP keepalive for every accepted socket (set on the listeners, which accepted sockets inherit): a
// peer that vanished without a FIN is found after idle + count x interval. idle 0 turns it off.
struct Keepalive {
  std::chrono::seconds idle{0};
  std::chrono::seconds interval{0};
  int count = 0;
};

struct ListenerSet {
  std::vector<int> fds;  // one per shard
  std::uint16_t port = 0;
};

// Binds `count` listeners on address:port (port 0 = the kernel picks one). Fails with a clear message
// if the address is invalid or the port is taken by anyone, another hub included.
// `flag` names the option that picks the port, for the error message.
Result<ListenerSet> open_listeners(const std::string& address, std::uint16_t port, unsigned count,
                                   const char* flag, const Keepalive& keepalive = {});
void close_listeners(ListenerSet& set);
// Takes a listening socket out of LISTEN (shutdown), so the port is free for a new hub at once, even
// while a ring's pending accept still holds the socket open, and its SO_REUSEPORT group's other
// members take new connections. Safe from any thread, and twice; the descriptor stays open.
void stop_listening(int fd);
// The same for every socket of the set; they stay open until close_listeners.
void stop_listening(const ListenerSet& set);

}  // namespace ringhub
