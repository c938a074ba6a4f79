// Admin HTTP server: one thread, one poll() over a wake eventfd, the listener and up to
// kAdminMaxClients non-blocking client sockets, each with a deadline. See transport/admin_server.hpp.
#include "transport/admin_server.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "core/prometheus.hpp"
#include "transport/listener.hpp"

namespace ringhub {

namespace {

using Clock = std::chrono::steady_clock;

// Only scrapers and health checks connect; a short queue is plenty.
constexpr int kAdminListenBacklog = 64;

// Out of descriptors or memory, accept() fails at once for as long as the condition lasts; leave
// the listener out of poll() this long instead of spinning on it.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

// One recv() at a time reads at most this much (requests are far smaller than a page).
constexpr std::size_t kReadChunk = 4096;

// Fairness cap: a client flooding us while we drain its input gets this many reads per wake-up, so
// it cannot keep the thread from the others (or from its own deadline) by never running dry.
constexpr int kDrainReadsPerWake = 16;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) {
      close(fd_);  // nothing useful to do on failure: Linux frees the descriptor regardless
    }
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// ---- Addresses and the listening socket -------------------------------------------------------

constexpr const char* kAdminFlag = "--admin-port";

// No SO_REUSEPORT: unlike the relay port, a second admin server on the same port is a mistake, and
// a plain bind reports it. SO_REUSEADDR only lets a restart reuse a port left in TIME_WAIT.
Result<UniqueFd> open_admin_listener(const std::string& address, std::uint16_t port) {
  auto addr = parse_socket_address(address, port);
  if (!addr) {
    return addr.error();
  }
  UniqueFd fd(socket(addr->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return socket_error("create a socket for", address, port, kAdminFlag);
  }
  const int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return socket_error("set socket options on", address, port, kAdminFlag);
  }
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr->storage), addr->length) != 0) {
    return socket_error("bind", address, port, kAdminFlag);
  }
  if (listen(fd.get(), kAdminListenBacklog) != 0) {
    return socket_error("listen on", address, port, kAdminFlag);
  }
  return fd;
}

Result<std::uint16_t> bound_port(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return make_error(fmt::format("cannot read the admin socket's port: {}", std::strerror(errno)), errno);
  }
  if (storage.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
}

// ---- HTTP: requests in, responses out -------------------------------------------------------

struct Response {
  int status = 200;
  std::string_view reason = "OK";
  std::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string_view extra_headers;  // complete "Name: value\r\n" lines
  bool head = false;               // HEAD: headers (Content-Length included) without the body
};

Response plain(int status, std::string_view reason, std::string body) {
  Response r;
  r.status = status;
  r.reason = reason;
  r.body = std::move(body);
  return r;
}

std::string serialize(const Response& r) {
  std::string out =
      fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
                  r.status, r.reason, r.content_type, r.body.size(), r.extra_headers);
  if (!r.head) {
    out += r.body;
  }
  return out;
}

// Where the request line and headers end: a blank line, CRLF or (leniently) bare LF.
bool header_complete(std::string_view request) {
  return request.find("\r\n\r\n") != std::string_view::npos || request.find("\n\n") != std::string_view::npos;
}

struct RequestLine {
  std::string_view method;
  std::string_view path;  // the target without its query string
  bool valid = false;
};

// "METHOD SP target SP HTTP/1.x"; headers are not needed to answer any of our routes.
RequestLine parse_request_line(std::string_view request) {
  std::string_view line = request.substr(0, request.find('\n'));
  if (line.ends_with('\r')) {
    line.remove_suffix(1);
  }
  RequestLine out;
  const auto first = line.find(' ');
  const auto second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos) {
    return out;
  }
  out.method = line.substr(0, first);
  const std::string_view target = line.substr(first + 1, second - first - 1);
  const std::string_view version = line.substr(second + 1);
  out.path = target.substr(0, target.find('?'));
  out.valid = !out.method.empty() && out.path.starts_with('/') && version.starts_with("HTTP/1.");
  return out;
}

// metrics_text is the caller's code: if it throws (bad_alloc, say), the scrape fails, not the thread.
Response metrics_response(const AdminServer::MetricsText& metrics_text) {
  try {
    Response r = plain(200, "OK", metrics_text());
    r.content_type = kMetricsContentType;
    return r;
  } catch (const std::exception& e) {
    spdlog::warn("admin: rendering /metrics failed: {}", e.what());
    return plain(500, "Internal Server Error", "metrics unavailable\n");
  }
}

Response route(std::string_view request, const AdminServer::MetricsText& metrics_text) {
  const RequestLine line = parse_request_line(request);
  if (!line.valid) {
    return plain(400, "Bad Request", "bad request\n");
  }
  if (line.method != "GET" && line.method != "HEAD") {
    Response r = plain(405, "Method Not Allowed", "method not allowed\n");
    r.extra_headers = "Allow: GET, HEAD\r\n";
    return r;
  }
  Response r = line.path == "/metrics"   ? metrics_response(metrics_text)
               : line.path == "/healthz" ? plain(200, "OK", "ok\n")
                                         : plain(404, "Not Found", "not found\n");
  r.head = line.method == "HEAD";
  return r;
}

// ---- The event loop ---------------------------------------------------------------------------

// A client moves reading -> writing -> draining -> done, or straight to done on EOF, error or its
// deadline. Draining waits for the client's EOF after our FIN: closing with unread input (a POST
// body, an oversized header) would send RST, which can destroy the reply before the client reads it.
enum class Phase { kReading, kWriting, kDraining, kDone };

struct Client {
  UniqueFd fd;
  Phase phase = Phase::kReading;
  Clock::time_point deadline;
  std::string request;
  std::string reply;
  std::size_t sent = 0;
};

short poll_events(Phase phase) {
  return phase == Phase::kWriting ? POLLOUT : POLLIN;
}

bool is_transient_accept_error(int err) {
  // accept(2): pending network errors on the new socket are reported here; treat them like EAGAIN.
  switch (err) {
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:  // a firewall rule refused the connection
      return true;
    default: return false;
  }
}

// Runs on the admin thread only; the control thread touches nothing but wake_fd (through stop()).
class AdminLoop {
 public:
  AdminLoop(UniqueFd listener, UniqueFd wake, AdminServer::MetricsText metrics_text, AdminLimits limits)
      : listener_(std::move(listener)),
        wake_(std::move(wake)),
        metrics_text_(std::move(metrics_text)),
        limits_(limits) {}

  int wake_fd() const { return wake_.get(); }
  void run();

 private:
  bool accepting(Clock::time_point now) const {
    return clients_.size() < limits_.max_clients && now >= accept_paused_until_;
  }
  int poll_timeout_ms(Clock::time_point now) const;
  void expire(Clock::time_point now);
  void accept_clients();
  void advance(Client& client);
  void read_request(Client& client);
  void respond(Client& client, const Response& response);
  void write_reply(Client& client);
  void drain(Client& client);

  UniqueFd listener_;
  UniqueFd wake_;
  AdminServer::MetricsText metrics_text_;
  AdminLimits limits_;
  std::vector<Client> clients_;
  std::vector<pollfd> pollfds_;  // rebuilt every iteration: [wake, listener, clients...]
  Clock::time_point accept_paused_until_{};
};

void AdminLoop::run() {
  for (;;) {
    const Clock::time_point now = Clock::now();
    expire(now);
    pollfds_.clear();
    pollfds_.push_back({wake_.get(), POLLIN, 0});
    // A negative fd makes poll() skip the entry: the listener rests while we are full or backing off.
    pollfds_.push_back({accepting(now) ? listener_.get() : -1, POLLIN, 0});
    for (const Client& client : clients_) {
      pollfds_.push_back({client.fd.get(), poll_events(client.phase), 0});
    }
    if (poll(pollfds_.data(), pollfds_.size(), poll_timeout_ms(now)) < 0) {
      if (errno != EINTR) {
        spdlog::error("admin: poll failed: {}", std::strerror(errno));
      }
      continue;
    }
    if (pollfds_[0].revents != 0) {
      return;  // stop(): no need to read the eventfd, nobody waits on it again
    }
    // Clients first: accept_clients() appends, and pollfds_ only covers the clients polled above.
    for (std::size_t i = 0; i < clients_.size() && i + 2 < pollfds_.size(); ++i) {
      if (pollfds_[i + 2].revents != 0) {
        advance(clients_[i]);
      }
    }
    if (pollfds_[1].revents != 0) {
      accept_clients();
    }
    std::erase_if(clients_, [](const Client& c) { return c.phase == Phase::kDone; });
  }
}

// Until the nearest client deadline or the end of an accept back-off; forever if neither.
int AdminLoop::poll_timeout_ms(Clock::time_point now) const {
  std::optional<Clock::time_point> wake_at;
  for (const Client& client : clients_) {
    wake_at = std::min(wake_at.value_or(client.deadline), client.deadline);
  }
  if (now < accept_paused_until_) {
    wake_at = std::min(wake_at.value_or(accept_paused_until_), accept_paused_until_);
  }
  if (!wake_at) {
    return -1;
  }
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*wake_at - now).count();
  return static_cast<int>(std::clamp<std::int64_t>(ms, 0, INT_MAX));
}

void AdminLoop::expire(Clock::time_point now) {
  std::erase_if(clients_, [now](const Client& c) { return c.deadline <= now; });
}

void AdminLoop::accept_clients() {
  while (clients_.size() < limits_.max_clients) {
    const int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      clients_.push_back(
          Client{UniqueFd(fd), Phase::kReading, Clock::now() + limits_.client_timeout, {}, {}, 0});
      continue;
    }
    const int err = errno;
    if (err == EINTR || is_transient_accept_error(err)) {
      continue;
    }
    if (err != EAGAIN && err != EWOULDBLOCK) {
      // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays queued until we can take it.
      spdlog::warn("admin: accept failed: {}; pausing accepts for {} ms", std::strerror(err),
                   kAcceptBackoff.count());
      accept_paused_until_ = Clock::now() + kAcceptBackoff;
    }
    return;
  }
}

void AdminLoop::advance(Client& client) {
  switch (client.phase) {
    case Phase::kReading: read_request(client); break;
    case Phase::kWriting: write_reply(client); break;
    case Phase::kDraining: drain(client); break;
    case Phase::kDone: break;
  }
}

void AdminLoop::read_request(Client& client) {
  std::array<char, kReadChunk> chunk{};
  for (;;) {
    const std::size_t room = limits_.max_request_bytes - client.request.size();
    const ssize_t n = recv(client.fd.get(), chunk.data(), std::min(room, chunk.size()), 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (n <= 0) {  // EOF before a whole request, or a reset: nobody to answer
      client.phase = Phase::kDone;
      return;
    }
    client.request.append(chunk.data(), static_cast<std::size_t>(n));
    if (header_complete(client.request)) {
      respond(client, route(client.request, metrics_text_));
      return;
    }
    if (client.request.size() >= limits_.max_request_bytes) {
      respond(client, plain(431, "Request Header Fields Too Large", "request header too large\n"));
      return;
    }
  }
}

void AdminLoop::respond(Client& client, const Response& response) {
  client.request.clear();
  client.request.shrink_to_fit();
  client.reply = serialize(response);
  client.phase = Phase::kWriting;
  write_reply(client);  // the socket is almost always writable: skip a poll round
}

void AdminLoop::write_reply(Client& client) {
  while (client.sent < client.reply.size()) {
    // MSG_NOSIGNAL: a client that hung up gives EPIPE here, not a SIGPIPE that kills the hub.
    const ssize_t n = send(client.fd.get(), client.reply.data() + client.sent,
                           client.reply.size() - client.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (n < 0) {
      client.phase = Phase::kDone;
      return;
    }
    client.sent += static_cast<std::size_t>(n);
  }
  if (shutdown(client.fd.get(), SHUT_WR) != 0) {
    client.phase = Phase::kDone;  // ENOTCONN: the peer is gone already
    return;
  }
  client.phase = Phase::kDraining;
}

void AdminLoop::drain(Client& client) {
  std::array<char, kReadChunk> scratch{};
  for (int reads = 0; reads < kDrainReadsPerWake; ++reads) {
    const ssize_t n = recv(client.fd.get(), scratch.data(), scratch.size(), 0);
    if (n > 0) {
      continue;  // discarded: the reply is sent; this only waits for the client's EOF
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    client.phase = Phase::kDone;
    return;
  }
}

// ---- /proc readers ----------------------------------------------------------------------------

// Reads a small /proc file whole; empty on any failure.
std::string read_small_file(const char* path) {
  UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return {};
  }
  std::string out;
  std::array<char, 256> chunk{};
  for (;;) {
    const ssize_t n = read(fd.get(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return {};
    }
    if (n == 0) {
      return out;
    }
    out.append(chunk.data(), static_cast<std::size_t>(n));
  }
}

}  // namespace

// ---- AdminServer ------------------------------------------------------------------------------

struct AdminServer::Impl {
  std::unique_ptr<AdminLoop> loop;
  std::thread thread;
  std::uint16_t port = 0;
  std::mutex stop_mutex;  // stop() from the destructor and from a caller must not both join
};

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() {
  stop();
}

std::uint16_t AdminServer::port() const {
  return impl_->port;
}

Result<std::unique_ptr<AdminServer>> AdminServer::start(const std::string& address, std::uint16_t port,
                                                        MetricsText metrics_text, const AdminLimits& limits) {
  auto listener = open_admin_listener(address, port);
  if (!listener) {
    return listener.error();
  }
  auto bound = bound_port(listener->get());
  if (!bound) {
    return bound.error();
  }
  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (wake.get() < 0) {
    return make_error(fmt::format("cannot create the admin server's eventfd: {}", std::strerror(errno)),
                      errno);
  }
  auto impl = std::make_unique<Impl>();
  impl->port = *bound;
  impl->loop =
      std::make_unique<AdminLoop>(std::move(*listener), std::move(wake), std::move(metrics_text), limits);
  try {
    impl->thread = std::thread([loop = impl->loop.get()] { loop->run(); });
  } catch (const std::system_error& e) {
    return make_error(fmt::format("cannot start the admin server thread: {}", e.what()), e.code().value());
  }
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

void AdminServer::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (!impl_->thread.joinable()) {
    return;
  }
  const std::uint64_t one = 1;
  ssize_t n;
  do {
    n = write(impl_->loop->wake_fd(), &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof one)) {
    // The counter cannot overflow from one write and the fd is ours: an impossible state.
    spdlog::critical("admin: cannot wake the admin thread: {}", std::strerror(errno));
    std::abort();
  }
  impl_->thread.join();
  impl_->loop.reset();  // closes the listener, the eventfd and any client still connected
}

std::uint64_t read_resident_memory_bytes() {
  // statm: "size resident shared text lib data dt", in pages.
  const std::string statm = read_small_file("/proc/self/statm");
  const auto space = statm.find(' ');
  if (space == std::string::npos) {
    return 0;
  }
  std::uint64_t pages = 0;
  const char* begin = statm.data() + space + 1;
  if (std::from_chars(begin, statm.data() + statm.size(), pages).ec != std::errc{}) {
    return 0;
  }
  const long page_size = sysconf(_SC_PAGESIZE);
  return page_size > 0 ? pages * static_cast<std::uint64_t>(page_size) : 0;
}

std::uint64_t count_open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return 0;
  }
  std::uint64_t count = 0;
  for (;;) {
    errno = 0;  // readdir() returns nullptr both at the end and on error; errno tells them apart
    const dirent* entry = readdir(dir);
    if (entry == nullptr) {
      break;
    }
    if (entry->d_name[0] != '.') {  // skip "." and ".."
      ++count;
    }
  }
  const bool failed = errno != 0;
  closedir(dir);
  if (failed || count == 0) {
    return 0;
  }
  return count - 1;  // the directory's own descriptor
}

}  // namespace ringhub
