// Single-stream loopback TCP throughput: a listener on 127.0.0.1:0, one connection, a sender thread
// and a receiver thread; see loopback.hpp. Every syscall is checked; a failure ends the measurement.
#include "perf/limits/loopback.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "transport/unique_fd.hpp"

namespace ringhub::limits {

namespace {

using Clock = std::chrono::steady_clock;

// A send or recv blocked this long past the planned duration means the other side is stuck: the
// measurement fails rather than hang.
constexpr int kStallSlackSeconds = 10;

sockaddr_in loopback_address(in_port_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = port;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

Result<UniqueFd> make_listener() {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) {
    return errno_error("socket");
  }
  const sockaddr_in address = loopback_address(0);  // port 0: the kernel picks a free one
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return errno_error("bind 127.0.0.1:0");
  }
  if (::listen(listener.get(), 1) != 0) {
    return errno_error("listen");
  }
  return listener;
}

// A connected pair over 127.0.0.1: first the sending end, second the receiving end.
Result<std::pair<UniqueFd, UniqueFd>> connect_pair() {
  auto listener = make_listener();
  if (!listener) {
    return listener.error();
  }
  sockaddr_in bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(listener->get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return errno_error("getsockname");
  }
  UniqueFd sender(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sender.get() < 0) {
    return errno_error("socket");
  }
  const sockaddr_in target = loopback_address(bound.sin_port);
  if (::connect(sender.get(), reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) {
    return errno_error("connect");
  }
  UniqueFd receiver(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (receiver.get() < 0) {
    return errno_error("accept4");
  }
  return std::pair<UniqueFd, UniqueFd>(std::move(sender), std::move(receiver));
}

Result<void> set_timeouts(int fd, double duration_s) {
  timeval limit{};
  limit.tv_sec = static_cast<time_t>(duration_s) + kStallSlackSeconds;
  for (const int option : {SO_SNDTIMEO, SO_RCVTIMEO}) {
    if (::setsockopt(fd, SOL_SOCKET, option, &limit, sizeof(limit)) != 0) {
      return errno_error("setsockopt SO_SNDTIMEO/SO_RCVTIMEO");
    }
  }
  return {};
}

Result<void> pin_to(int cpu) {
  if (cpu < 0) {
    return {};
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (const int code = pthread_setaffinity_np(pthread_self(), sizeof(set), &set); code != 0) {
    return system_error(code, fmt::format("pin to cpu {}: {}", cpu, std::strerror(code)));
  }
  return {};
}

// Writes write_size chunks until the duration or the byte budget runs out.
Result<void> write_chunks(int fd, const LoopbackSpec& spec, Clock::time_point start) {
  const std::vector<char> chunk(spec.write_size, 'x');
  const auto stop = start + std::chrono::duration<double>(spec.duration_s);
  std::uint64_t sent = 0;
  while (sent < spec.max_bytes && Clock::now() < stop) {
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EINTR) {
      return errno_error("send");
    }
    sent += n > 0 ? static_cast<std::uint64_t>(n) : 0;
  }
  return {};
}

// The sender thread: writes, then shuts down the write side, also after a failed send, so the
// receiver always sees end-of-stream instead of waiting for its timeout.
Result<void> send_stream(int fd, const LoopbackSpec& spec, Clock::time_point start) {
  auto written = pin_to(spec.sender_cpu);
  if (written) {
    written = write_chunks(fd, spec, start);
  }
  if (::shutdown(fd, SHUT_WR) != 0 && written) {
    return errno_error("shutdown");
  }
  return written;
}

// Reads until end-of-stream; returns the bytes read.
Result<std::uint64_t> receive_stream(int fd, const LoopbackSpec& spec) {
  if (auto pinned = pin_to(spec.receiver_cpu); !pinned) {
    return pinned.error();
  }
  std::vector<char> buffer(spec.write_size);
  std::uint64_t received = 0;
  for (;;) {
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n == 0) {
      return received;
    }
    if (n < 0 && errno != EINTR) {
      return errno_error("recv");
    }
    received += n > 0 ? static_cast<std::uint64_t>(n) : 0;
  }
}

}  // namespace

Result<double> measure_loopback(const LoopbackSpec& spec) {
  if (spec.write_size == 0 || spec.duration_s <= 0 || spec.max_bytes == 0) {
    return make_error("bad loopback spec: write size, duration and byte budget must be positive");
  }
  auto pair = connect_pair();
  if (!pair) {
    return pair.error();
  }
  auto& [sender, receiver] = *pair;
  for (const int fd : {sender.get(), receiver.get()}) {
    if (auto timeouts = set_timeouts(fd, spec.duration_s); !timeouts) {
      return timeouts.error();
    }
  }
  const auto start = Clock::now();
  Result<void> sent = make_error("sender did not run");
  Result<std::uint64_t> received = make_error("receiver did not run");
  // The descriptors are captured by value: C++17 lambdas (and clang 14) cannot capture structured bindings.
  std::thread receiving([&, fd = receiver.get()] { received = receive_stream(fd, spec); });
  std::thread sending([&, fd = sender.get()] { sent = send_stream(fd, spec, start); });
  sending.join();
  receiving.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!sent) {
    return sent.error();
  }
  if (!received) {
    return received.error();
  }
  return static_cast<double>(*received) / seconds;
}

}  // namespace ringhub::limits
