// Non-blocking TCP connect with a deadline; see clients/cpp/tcp_connect.hpp.
#include "clients/cpp/tcp_connect.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <memory>
#include <system_error>

namespace ringhub::client {

namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// How often a cancellable wait looks at its cancel flag.
constexpr Ms kCancelCheck{50};

using AddressList = std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)>;

Result<AddressList> resolve(const std::string& host, std::uint16_t port) {
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
  return AddressList(list, &::freeaddrinfo);
}

// Rounded up, so a wait never wakes just short of its deadline and spins through zero-length polls.
int poll_ms(Clock::time_point until, bool cancellable) {
  Ms left = std::max(std::chrono::ceil<Ms>(until - Clock::now()), Ms{0});
  if (cancellable) {
    left = std::min(left, kCancelCheck);
  }
  return static_cast<int>(std::min<Ms::rep>(left.count(), std::numeric_limits<int>::max()));
}

// Waits for the connect to finish (POLLOUT) until `until`, across signals and cancel checks.
Result<void> wait_connected(int fd, Clock::time_point until, const std::atomic<bool>* cancel) {
  for (;;) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
      return system_error(ECANCELED, "cancelled");
    }
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, poll_ms(until, cancel != nullptr));
    if (ready > 0) {
      return {};  // success or failure shows in SO_ERROR
    }
    if (ready == 0 && Clock::now() >= until) {
      return system_error(ETIMEDOUT, "timed out while connecting");
    }
    if (ready < 0 && errno != EINTR) {
      return errno_error("poll failed", errno);
    }
  }
}

Result<UniqueFd> connect_to(const addrinfo& address, Clock::time_point until,
                            const std::atomic<bool>* cancel) {
  UniqueFd fd(
      ::socket(address.ai_family, address.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, address.ai_protocol));
  if (fd.get() < 0) {
    return errno_error("socket failed", errno);
  }
  // A non-blocking connect interrupted by a signal carries on in the background, as EINPROGRESS does.
  if (::connect(fd.get(), address.ai_addr, address.ai_addrlen) < 0 && errno != EINPROGRESS &&
      errno != EINTR) {
    const int err = errno;
    return system_error(err, std::system_category().message(err));
  }
  if (Result<void> done = wait_connected(fd.get(), until, cancel); !done) {
    return done.error();
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
    return errno_error("getsockopt(SO_ERROR) failed", errno);
  }
  if (err != 0) {
    return system_error(err, std::system_category().message(err));
  }
  const int on = 1;
  if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0) {
    return errno_error("setsockopt(TCP_NODELAY) failed", errno);
  }
  return fd;
}

}  // namespace

std::string endpoint_text(const std::string& host, std::uint16_t port) {
  const bool ipv6_literal = host.find(':') != std::string::npos;
  return ipv6_literal ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

Result<std::vector<uring::SocketAddress>> resolve_hub(const std::string& host, std::uint16_t port) {
  Result<AddressList> addresses = resolve(host, port);
  if (!addresses) {
    return addresses.error();
  }
  std::vector<uring::SocketAddress> found;
  for (const addrinfo* a = addresses->get(); a != nullptr; a = a->ai_next) {
    found.emplace_back(a->ai_addr, a->ai_addrlen);
  }
  return found;
}

Result<UniqueFd> tcp_connect(const std::string& host, std::uint16_t port, Clock::time_point until,
                             const std::atomic<bool>* cancel) {
  Result<AddressList> addresses = resolve(host, port);
  if (!addresses) {
    return addresses.error();
  }
  Error last = system_error(EHOSTUNREACH, "no address to connect to");
  for (const addrinfo* a = addresses->get(); a != nullptr; a = a->ai_next) {
    Result<UniqueFd> fd = connect_to(*a, until, cancel);
    if (fd || fd.error().is_system(ECANCELED)) {
      return fd;
    }
    last = fd.error();
  }
  return rephrase(last, fmt::format("cannot reach hub at {}: {}", endpoint_text(host, port), last.message));
}

}  // namespace ringhub::client
