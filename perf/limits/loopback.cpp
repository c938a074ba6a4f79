// Loopback TCP measurements (see loopback.hpp): single-stream throughput, a listener on 127.0.0.1:0,
// one connection, a sender and a receiver thread; and the relay floor, a relay thread per stream
// between a writer and a reader. Every socket call is checked and a failure ends the measurement; the
// pipe's size is best effort (see relay_by_splice).
#include "perf/limits/loopback.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
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

// Writes write_size chunks until the duration or the byte budget runs out, and at least one chunk:
// under a sanitizer, starting the threads can take longer than a short smoke run's whole duration.
Result<void> write_chunks(int fd, const LoopbackSpec& spec, Clock::time_point start) {
  const std::vector<char> chunk(spec.write_size, 'x');
  const auto stop = start + std::chrono::duration<double>(spec.duration_s);
  std::uint64_t sent = 0;
  while (sent < chunk.size() || (sent < spec.max_bytes && Clock::now() < stop)) {
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

// Reads in `chunk`-byte recvs on `cpu` until end-of-stream; returns the bytes read.
Result<std::uint64_t> read_to_end(int fd, std::size_t chunk, int cpu) {
  if (auto pinned = pin_to(cpu); !pinned) {
    return pinned.error();
  }
  std::vector<char> buffer(chunk);
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
  std::thread receiving(
      [&, fd = receiver.get()] { received = read_to_end(fd, spec.write_size, spec.receiver_cpu); });
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

namespace {

Result<void> write_all(int fd, const char* bytes, std::size_t length) {
  while (length > 0) {
    const ssize_t n = ::send(fd, bytes, length, MSG_NOSIGNAL);
    if (n < 0 && errno != EINTR) {
      return errno_error("relay send");
    }
    const auto written = static_cast<std::size_t>(n > 0 ? n : 0);
    bytes += written;
    length -= written;
  }
  return {};
}

// The relay loop of both methods: `take` moves up to one chunk off the writer's socket (returning the
// bytes taken, 0 at end-of-stream, -1 with errno), `pass` hands them on to the reader's socket.
template <typename Take, typename Pass>
Result<void> relay_until_end(Take take, Pass pass, std::string_view taking) {
  for (;;) {
    const ssize_t n = take();
    if (n == 0) {
      return {};
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno_error(taking);
    }
    if (auto passed = pass(static_cast<std::size_t>(n)); !passed) {
      return passed;
    }
  }
}

Result<void> relay_by_copy(int in, int out, std::size_t chunk) {
  std::vector<char> buffer(chunk);
  return relay_until_end([&] { return ::recv(in, buffer.data(), buffer.size(), 0); },
                         [&](std::size_t n) { return write_all(out, buffer.data(), n); }, "relay recv");
}

// Moves what one splice took into the pipe on to `out`.
Result<void> splice_out(int pipe_read, int out, std::size_t length) {
  while (length > 0) {
    const ssize_t n = ::splice(pipe_read, nullptr, out, nullptr, length, SPLICE_F_MOVE);
    if (n < 0 && errno != EINTR) {
      return errno_error("splice to the reader's socket");
    }
    length -= static_cast<std::size_t>(n > 0 ? n : 0);
  }
  return {};
}

Result<void> relay_by_splice(int in, int out, std::size_t chunk) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) {
    return errno_error("pipe2");
  }
  const UniqueFd pipe_read(ends[0]);
  const UniqueFd pipe_write(ends[1]);
  // A pipe as large as one write, so one splice can take it; past /proc/sys/fs/pipe-max-size the
  // default 64 KiB stays, which only costs more splices.
  (void)::fcntl(pipe_write.get(), F_SETPIPE_SZ, static_cast<int>(chunk));
  return relay_until_end(
      [&] { return ::splice(in, nullptr, pipe_write.get(), nullptr, chunk, SPLICE_F_MOVE); },
      [&](std::size_t n) { return splice_out(pipe_read.get(), out, n); }, "splice from the writer's socket");
}

double thread_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);  // cannot fail for the calling thread
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// One relay thread: relays until the writer's end-of-stream, then passes the end on to the reader.
// After a failure it shuts both its sockets down whole, so neither the writer nor the reader waits out
// its timeout. Adds its CPU time to `cpu_s`.
Result<void> run_relay(int in, int out, const RelayFloorSpec& spec, double& cpu_s) {
  Result<void> relayed = pin_to(spec.relay_cpu);
  const double start = thread_cpu_seconds();
  if (relayed) {
    relayed = spec.method == RelayMethod::kCopy ? relay_by_copy(in, out, spec.write_size)
                                                : relay_by_splice(in, out, spec.write_size);
  }
  cpu_s = thread_cpu_seconds() - start;
  if (!relayed) {
    ::shutdown(in, SHUT_RDWR);  // best effort: the failure is already what gets reported
    ::shutdown(out, SHUT_RDWR);
    return relayed;
  }
  if (::shutdown(out, SHUT_WR) != 0) {
    return errno_error("shutdown");
  }
  return relayed;
}

// The reader of a relay-floor stream; after a failure its socket is shut down whole, so the relay's
// sends fail at once instead of waiting out their timeout.
Result<std::uint64_t> run_reader(int fd, const RelayFloorSpec& spec) {
  Result<std::uint64_t> received = read_to_end(fd, spec.write_size, spec.load_cpu);
  if (!received) {
    ::shutdown(fd, SHUT_RDWR);  // best effort, as in run_relay
  }
  return received;
}

// A relay-floor stream: writer -> relay (inbound pair), relay -> reader (outbound pair).
struct RelayPath {
  std::pair<UniqueFd, UniqueFd> inbound;
  std::pair<UniqueFd, UniqueFd> outbound;
  Result<void> sent = make_error("writer did not run");
  Result<void> relayed = make_error("relay did not run");
  Result<std::uint64_t> received = make_error("reader did not run");
  double relay_cpu_s = 0;
  double writer_cpu_s = 0;
  double reader_cpu_s = 0;
};

// Runs `work` and adds the calling thread's CPU time over it to `cpu_s`.
template <typename Work>
auto timed_on_thread(double& cpu_s, Work&& work) {
  const double start = thread_cpu_seconds();
  auto result = work();
  cpu_s = thread_cpu_seconds() - start;
  return result;
}

Result<std::unique_ptr<RelayPath>> open_path(const RelayFloorSpec& spec) {
  auto inbound = connect_pair();
  if (!inbound) {
    return inbound.error();
  }
  auto outbound = connect_pair();
  if (!outbound) {
    return outbound.error();
  }
  for (const int fd :
       {inbound->first.get(), inbound->second.get(), outbound->first.get(), outbound->second.get()}) {
    if (auto timeouts = set_timeouts(fd, spec.duration_s); !timeouts) {
      return timeouts.error();
    }
  }
  auto path = std::make_unique<RelayPath>();
  path->inbound = std::move(*inbound);
  path->outbound = std::move(*outbound);
  return path;
}

}  // namespace

Result<RelayFloor> measure_relay_floor(const RelayFloorSpec& spec) {
  if (spec.streams == 0 || spec.write_size == 0 || spec.duration_s <= 0 || spec.max_bytes == 0) {
    return make_error("bad relay floor spec: streams, write size, duration and byte budget must be positive");
  }
  std::vector<std::unique_ptr<RelayPath>> paths;
  for (unsigned i = 0; i < spec.streams; ++i) {
    auto path = open_path(spec);
    if (!path) {
      return path.error();
    }
    paths.push_back(std::move(*path));
  }
  const LoopbackSpec writing{spec.write_size, spec.duration_s, spec.max_bytes, spec.load_cpu, spec.load_cpu};
  const auto start = Clock::now();
  // jthreads: should starting one throw, those already running are joined (each ends by its socket
  // timeouts at worst) rather than terminating the program.
  std::vector<std::jthread> threads;
  for (auto& path : paths) {
    RelayPath& p = *path;
    threads.emplace_back([&p, &spec] {
      p.received = timed_on_thread(p.reader_cpu_s, [&] { return run_reader(p.outbound.second.get(), spec); });
    });
    threads.emplace_back([&p, &spec] {
      p.relayed = run_relay(p.inbound.second.get(), p.outbound.first.get(), spec, p.relay_cpu_s);
    });
    threads.emplace_back([&p, &writing, start] {
      p.sent =
          timed_on_thread(p.writer_cpu_s, [&] { return send_stream(p.inbound.first.get(), writing, start); });
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  double relay_cpu_s = 0;
  double load_cpu_s = 0;
  std::uint64_t bytes = 0;
  for (const auto& path : paths) {
    // Downstream first: a failed reader makes the relay fail, and a failed relay the writer, while a
    // reader whose relay failed sees only an end-of-stream.
    if (!path->received) {
      return path->received.error();
    }
    if (!path->relayed) {
      return path->relayed.error();
    }
    if (!path->sent) {
      return path->sent.error();
    }
    relay_cpu_s += path->relay_cpu_s;
    load_cpu_s += path->writer_cpu_s + path->reader_cpu_s;
    bytes += *path->received;
  }
  if (bytes == 0) {
    return make_error("relay floor: nothing was relayed");
  }
  const auto relayed = static_cast<double>(bytes);
  return RelayFloor{relay_cpu_s * 1e9 / relayed, load_cpu_s * 1e9 / relayed, relayed / seconds};
}

}  // namespace ringhub::limits
