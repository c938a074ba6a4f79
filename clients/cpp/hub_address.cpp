// Resolving a hub's host with getaddrinfo(); see clients/cpp/hub_address.hpp.
#include "clients/cpp/hub_address.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <system_error>

namespace ringhub::client {

Result<std::vector<uring::SocketAddress>> resolve_hub(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
  if (rc != 0) {
    if (rc == EAI_SYSTEM) {
      const int err = errno;
      return system_error(
          err, fmt::format("cannot resolve hub host '{}': {}", host, std::system_category().message(err)));
    }
    return make_error(fmt::format("cannot resolve hub host '{}': {}", host, ::gai_strerror(rc)));
  }
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, &::freeaddrinfo);
  std::vector<uring::SocketAddress> found;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    found.emplace_back(a->ai_addr, a->ai_addrlen);
  }
  return found;
}

}  // namespace ringhub::client
