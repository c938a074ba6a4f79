// SO_REUSEPORT listener group; see transport/listener.hpp.
#include "transport/listener.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ringhub {

Result<SocketAddress> parse_socket_address(const std::string& address, std::uint16_t port) {
  SocketAddress out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    return out;
  }
  if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    out.family = AF_INET6;
    return out;
  }
  return system_error(EINVAL,
                      fmt::format("invalid bind address '{}': expected an IPv4 or IPv6 literal", address));
}

Error socket_error(const char* what, const std::string& address, std::uint16_t port, const char* flag) {
  const int err = errno;
  std::string hint;
  if (err == EADDRINUSE) {
    hint = fmt::format(" (is another hub or server using this port? pick another with {})",
                       flag != nullptr ? flag : "another port");
  }
  return system_error(err,
                      fmt::format("cannot {} {}:{}: {}{}", what, address, port, std::strerror(err), hint));
}

namespace {

// Deep enough that a 100k-client connect storm waits in the kernel, not in SYN retries.
constexpr int kListenBacklog = 65535;

bool set_int_option(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0;
}

// Binds a plain socket without SO_REUSEPORT: it fails if anyone already listens on the port, which a
// reuseport bind would silently share with another reuseport listener of the same user.
Result<void> check_port_free(const SocketAddress& addr, const std::string& address, std::uint16_t port,
                             const char* flag) {
  const int fd = socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return socket_error("create a socket for", address, port);
  }
  set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1);  // TIME_WAIT leftovers are not a conflict
  Result<void> result;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) {
    result = socket_error("bind", address, port, flag);
  }
  close(fd);
  return result;
}

bool set_keepalive(int fd, const Keepalive& keepalive) {
  if (keepalive.idle.count() == 0) {
    return true;
  }
  return set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1) &&
         set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, static_cast<int>(keepalive.idle.count())) &&
         set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, static_cast<int>(keepalive.interval.count())) &&
         set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, keepalive.count);
}

Result<int> open_one(const SocketAddress& addr, const std::string& address, std::uint16_t port,
                     const char* flag, const Keepalive& keepalive) {
  const int fd = socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return socket_error("create a socket for", address, port);
  }
  // Accepted sockets inherit TCP_NODELAY (relays are latency-bound messages) and the keepalive
  // settings from the listener: the hub's sockets are direct descriptors, set up here once.
  if (!set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1) || !set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1) ||
      !set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1) || !set_keepalive(fd, keepalive)) {
    Error e = socket_error("set socket options on", address, port);
    close(fd);
    return e;
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.storage), addr.length) != 0) {
    Error e = socket_error("bind", address, port, flag);
    close(fd);
    return e;
  }
  if (listen(fd, kListenBacklog) != 0) {
    Error e = socket_error("listen on", address, port);
    close(fd);
    return e;
  }
  return fd;
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return 0;
  }
  if (storage.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
}

}  // namespace

Result<ListenerSet> open_listeners(const std::string& address, std::uint16_t port, unsigned count,
                                   const char* flag, const Keepalive& keepalive) {
  auto addr = parse_socket_address(address, port);
  if (!addr) {
    return addr.error();
  }
  if (port != 0) {
    if (auto free = check_port_free(*addr, address, port, flag); !free) {
      return free.error();
    }
  }
  ListenerSet set;
  for (unsigned i = 0; i < count; ++i) {
    auto fd = open_one(*addr, address, port, flag, keepalive);
    if (!fd) {
      close_listeners(set);
      return fd.error();
    }
    set.fds.push_back(*fd);
    if (port == 0) {  // the rest of the group joins the port the kernel picked
      port = bound_port(*fd);
      reinterpret_cast<sockaddr_in*>(&addr->storage)->sin_port = htons(port);  // same offset for v6
    }
  }
  set.port = port;
  return set;
}

void stop_listening(int fd) {
  // ENOTCONN: no longer listening (shut down before); either way it is shut.
  if (::shutdown(fd, SHUT_RDWR) != 0 && errno != ENOTCONN) {
    spdlog::warn("shutting a listening socket down failed: {}", std::strerror(errno));
  }
}

void stop_listening(const ListenerSet& set) {
  for (const int fd : set.fds) {
    stop_listening(fd);
  }
}

void close_listeners(ListenerSet& set) {
  for (const int fd : set.fds) {
    close(fd);
  }
  set.fds.clear();
}

}  // namespace ringhub
