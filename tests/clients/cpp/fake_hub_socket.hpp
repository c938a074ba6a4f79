// Plain-socket helpers for the client tests' fake hubs: a loopback listener on port 0, blocking reads
// and writes that stop at EOF (Bytes is any contiguous byte container), and the fixture both use.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <utility>

namespace ringhub::client::fake_hub {

// Binds 127.0.0.1 port 0 and returns the socket and its port; listens only if asked, since a bound
// socket that does not listen makes a port that refuses connections without racing anyone for it.
inline std::pair<int, std::uint16_t> bind_loopback(bool listen) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 || (listen && ::listen(fd, 4) < 0) ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    if (fd >= 0) {
      ::close(fd);
    }
    return {-1, 0};
  }
  return {fd, ntohs(addr.sin_port)};
}

// Up to `n` bytes; fewer only if the client closed first (or a receive timeout on fd passed).
template <typename Bytes>
Bytes read_exact(int fd, std::size_t n) {
  Bytes out(n, 0);
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, out.data() + got, n - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      break;
    }
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

// Everything the client sends until it closes: the fake hub's way to wait for the client to let go.
template <typename Bytes>
Bytes read_until_eof(int fd) {
  Bytes out;
  for (Bytes chunk = read_exact<Bytes>(fd, 4096); !chunk.empty(); chunk = read_exact<Bytes>(fd, 4096)) {
    out.insert(out.end(), chunk.begin(), chunk.end());
  }
  return out;
}

template <typename Bytes>
void write_all(int fd, const Bytes& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t r = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return;  // the client hung up; the test's own checks report what went wrong
    }
    sent += static_cast<std::size_t>(r);
  }
}

// A fake hub listening on 127.0.0.1: the test starts a script on hub_ that plays the hub's part; what
// the script saw is read after join_hub(), which orders it.
class FakeHubTest : public testing::Test {
 protected:
  void SetUp() override {
    std::tie(listen_fd_, port_) = bind_loopback(true);
    ASSERT_GE(listen_fd_, 0) << "cannot listen on 127.0.0.1";
  }

  void TearDown() override {
    if (hub_.joinable()) {
      ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept() if a failed test never connected
      hub_.join();
    }
    ::close(listen_fd_);
  }

  void join_hub() { hub_.join(); }

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread hub_;
};

}  // namespace ringhub::client::fake_hub
