// SocketAddress: an IPv4 or IPv6 address as the kernel takes it, for the engine's connects and for
// the client library's name resolution.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace ringhub::uring {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;  // 0: no address

  SocketAddress() = default;
  // NOLINTNEXTLINE(google-explicit-constructor): the harnesses' addresses are IPv4 and convert freely
  SocketAddress(const sockaddr_in& v4) : length(sizeof v4) { std::memcpy(&storage, &v4, sizeof v4); }
  // Copies `size` bytes of `address`; one longer than a sockaddr_storage gives no address.
  SocketAddress(const sockaddr* address, socklen_t size) {
    if (size <= sizeof storage) {
      std::memcpy(&storage, address, size);
      length = size;
    }
  }

  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

}  // namespace ringhub::uring
