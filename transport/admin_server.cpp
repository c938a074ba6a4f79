// Admin HTTP server: one thread, one epoll set over a wake eventfd, the listener and up to
// kAdminMaxClients non-blocking client sockets, each with a deadline; at the cap a new connection
// evicts the oldest idle one. Requests are parsed by core/http_request. See transport/admin_server.hpp.
#include "transport/admin_server.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
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
#include <list>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "core/prometheus.hpp"
#include "transport/listener.hpp"
#include "transport/unique_fd.hpp"

namespace ringhub {

namespace {

using Clock = std::chrono::steady_clock;

// Connections the kernel completes before we accept them. A burst of squatters' connects must not fill
// it: a full queue drops a scraper's SYN, and its retransmission comes a second later. (The kernel caps
// it at net.core.somaxconn, 4096 by default.)
constexpr int kAdminListenBacklog = 1024;

// Out of descriptors or memory, accept() fails at once for as long as the condition lasts; leave
// the listener out of the epoll set this long instead of spinning on it.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

// One recv() at a time reads at most this much (requests are far smaller than a page).
constexpr std::size_t kReadChunk = 4096;

// Fairness cap: a client flooding us while we drain its input gets this many reads per wake-up, so
// it cannot keep the thread from the others (or from its own deadline) by never running dry.
constexpr int kDrainReadsPerWake = 16;

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
    return system_error(errno, fmt::format("cannot read the admin socket's port: {}", std::strerror(errno)));
  }
  if (storage.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
}

// ---- HTTP: responses out (requests are parsed by core/http_request) ---------------------------

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

// The answer to a parse with a verdict (anything but kIncomplete).
Response route(const HttpParse& parse, const AdminServer::MetricsText& metrics_text) {
  switch (parse.status) {
    case HttpParseStatus::kBadRequest: return plain(400, "Bad Request", "bad request\n");
    case HttpParseStatus::kTooLarge:
      return plain(431, "Request Header Fields Too Large", "request header too large\n");
    case HttpParseStatus::kMethodNotAllowed: {
      Response r = plain(405, "Method Not Allowed", "method not allowed\n");
      r.extra_headers = "Allow: GET, HEAD\r\n";
      return r;
    }
    case HttpParseStatus::kIncomplete:  // not a verdict: the loop never routes one
    case HttpParseStatus::kComplete: break;
  }
  Response r = parse.path == "/metrics"   ? metrics_response(metrics_text)
               : parse.path == "/healthz" ? plain(200, "OK", "ok\n")
                                          : plain(404, "Not Found", "not found\n");
  r.head = parse.method == HttpMethod::kHead;
  return r;
}

// ---- The event loop ---------------------------------------------------------------------------

// A client moves reading -> writing -> draining -> done, or straight to done on EOF, error, eviction
// or its deadline. Draining waits for the client's EOF after our FIN: closing with unread input (a POST
// body, an oversized header) would send RST, which can destroy the reply before the client reads it.
enum class Phase { kReading, kWriting, kDraining, kDone };

struct Client {
  UniqueFd fd;
  Phase phase = Phase::kReading;
  Clock::time_point deadline;
  std::string request;  // at most max_request_bytes
  std::string reply;
  std::size_t sent = 0;
};

// epoll tokens (data.u64) of the two descriptors that are not clients; a client's token is its address
// (data.ptr), never 0 or 1.
constexpr std::uint64_t kWakeToken = 0;
constexpr std::uint64_t kListenerToken = 1;

// Events taken from one epoll_wait; more simply wait for the next round.
constexpr int kEpollBatch = 64;

// Connections accepted per wake-up, so a connect flood cannot starve the clients' events (the
// listener is level-triggered: what is left is reported again at once).
constexpr int kAcceptsPerWake = 64;

std::uint32_t epoll_events(Phase phase) {
  return phase == Phase::kWriting ? EPOLLOUT : EPOLLIN;
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

// Registers, changes or removes an fd in an epoll set; false (errno set) on failure.
bool epoll_watch(int epoll_fd, int op, int fd, std::uint32_t events, epoll_data_t token) {
  epoll_event event{};
  event.events = events;
  event.data = token;
  return epoll_ctl(epoll_fd, op, fd, &event) == 0;
}

epoll_data_t fixed_token(std::uint64_t token) {
  epoll_data_t data{};
  data.u64 = token;
  return data;
}

epoll_data_t client_token(Client& client) {
  epoll_data_t data{};
  data.ptr = &client;
  return data;
}

// Runs on the admin thread only; the control thread touches nothing but wake_fd (through stop()).
// Clients are kept in accept order, which is also deadline order (every deadline is accept time plus
// the same client_timeout): expiry looks at the front only, and eviction takes the oldest.
class AdminLoop {
 public:
  AdminLoop(UniqueFd epoll, UniqueFd listener, UniqueFd wake, AdminServer::MetricsText metrics_text,
            AdminLimits limits)
      : epoll_(std::move(epoll)),
        listener_(std::move(listener)),
        wake_(std::move(wake)),
        metrics_text_(std::move(metrics_text)),
        limits_(limits) {}

  int wake_fd() const { return wake_.get(); }
  void run();

 private:
  using ClientList = std::list<Client>;  // nodes never move: a client's address is its epoll token

  int wait_timeout_ms(Clock::time_point now) const;
  void expire(Clock::time_point now);
  void resume_accepting(Clock::time_point now);
  void accept_clients();
  void add_client(UniqueFd fd);
  void evict_one();
  void advance(Client& client);
  void read_request(Client& client);
  void respond(Client& client, const Response& response);
  void write_reply(Client& client);
  void drain(Client& client);
  void set_phase(Client& client, Phase phase);

  UniqueFd epoll_;
  UniqueFd listener_;
  UniqueFd wake_;
  AdminServer::MetricsText metrics_text_;
  AdminLimits limits_;
  ClientList clients_;
  std::array<epoll_event, kEpollBatch> events_{};
  std::optional<Clock::time_point> accept_paused_until_;  // set while the listener is out of epoll
  bool evicting_ = false;  // logged once per stretch at the cap, not once per eviction
};

void AdminLoop::run() {
  for (;;) {
    const Clock::time_point now = Clock::now();
    expire(now);
    resume_accepting(now);
    const int n = epoll_wait(epoll_.get(), events_.data(), kEpollBatch, wait_timeout_ms(now));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      // EBADF, EFAULT, EINVAL: the set and the buffer are ours, so this cannot happen.
      spdlog::critical("admin: epoll_wait failed: {}", std::strerror(errno));
      std::abort();
    }
    bool accept_ready = false;
    for (int i = 0; i < n; ++i) {
      const epoll_data_t token = events_[static_cast<std::size_t>(i)].data;
      if (token.u64 == kWakeToken) {
        return;  // stop(): no need to read the eventfd, nobody waits on it again
      }
      if (token.u64 == kListenerToken) {
        accept_ready = true;
      } else {
        advance(*static_cast<Client*>(token.ptr));
      }
    }
    // Finished clients go only now, so no event of this batch names a freed client; accepts come
    // after, since an eviction frees one too.
    clients_.remove_if([](const Client& c) { return c.phase == Phase::kDone; });
    if (accept_ready) {
      accept_clients();
    }
  }
}

// Until the oldest client's deadline or the end of an accept back-off; forever if neither.
int AdminLoop::wait_timeout_ms(Clock::time_point now) const {
  std::optional<Clock::time_point> wake_at;
  if (!clients_.empty()) {
    wake_at = clients_.front().deadline;
  }
  if (accept_paused_until_) {
    wake_at = std::min(wake_at.value_or(*accept_paused_until_), *accept_paused_until_);
  }
  if (!wake_at) {
    return -1;
  }
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*wake_at - now).count();
  return static_cast<int>(std::clamp<std::int64_t>(ms, 0, INT_MAX));
}

// Closes every client past its deadline. One still reading gets a best-effort 408 first: one
// non-blocking send, never waited on.
void AdminLoop::expire(Clock::time_point now) {
  while (!clients_.empty() && clients_.front().deadline <= now) {
    Client& client = clients_.front();
    if (client.phase == Phase::kReading) {
      const std::string reply = serialize(plain(408, "Request Timeout", "request timeout\n"));
      // Best effort: a full buffer or a gone peer changes nothing, the connection closes either way.
      (void)send(client.fd.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    clients_.pop_front();  // closing the fd also removes it from the epoll set
  }
}

void AdminLoop::resume_accepting(Clock::time_point now) {
  if (!accept_paused_until_ || now < *accept_paused_until_) {
    return;
  }
  accept_paused_until_.reset();
  if (!epoll_watch(epoll_.get(), EPOLL_CTL_MOD, listener_.get(), EPOLLIN, fixed_token(kListenerToken))) {
    spdlog::critical("admin: cannot watch the listener again: {}", std::strerror(errno));
    std::abort();  // the fd is registered and ours: an impossible state
  }
}

void AdminLoop::accept_clients() {
  for (int accepted = 0; accepted < kAcceptsPerWake; ++accepted) {
    UniqueFd fd(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd.get() >= 0) {
      add_client(std::move(fd));
      continue;
    }
    const int err = errno;
    if (err == EINTR || is_transient_accept_error(err)) {
      continue;
    }
    if (err != EAGAIN && err != EWOULDBLOCK) {
      // EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays queued until we can take it.
      // Level-triggered, the listener would wake us at once again: leave it out of the set a while.
      spdlog::warn("admin: accept failed: {}; pausing accepts for {} ms", std::strerror(err),
                   kAcceptBackoff.count());
      accept_paused_until_ = Clock::now() + kAcceptBackoff;
      if (!epoll_watch(epoll_.get(), EPOLL_CTL_MOD, listener_.get(), 0, fixed_token(kListenerToken))) {
        spdlog::critical("admin: cannot pause the listener: {}", std::strerror(errno));
        std::abort();
      }
    }
    return;
  }
}

void AdminLoop::add_client(UniqueFd fd) {
  if (clients_.size() >= limits_.max_clients) {
    evict_one();
  } else if (clients_.size() < limits_.max_clients / 2) {
    evicting_ = false;
  }
  Client& client = clients_.emplace_back();
  client.fd = std::move(fd);
  client.deadline = Clock::now() + limits_.client_timeout;
  if (!epoll_watch(epoll_.get(), EPOLL_CTL_ADD, client.fd.get(), EPOLLIN, client_token(client))) {
    // ENOMEM or ENOSPC (max_user_watches): this one client goes; the others are unaffected.
    spdlog::warn("admin: cannot watch a new connection: {}", std::strerror(errno));
    clients_.pop_back();
  }
}

// Closes the oldest client that is not being written to (idle, trickling, or done and waiting for
// its EOF); if every one is being written to, the oldest of all.
void AdminLoop::evict_one() {
  if (clients_.empty()) {
    return;  // max_clients 0: nothing to make room from; the new client is served all the same
  }
  if (!evicting_) {
    spdlog::warn("admin: {} connections open; each new one now closes the oldest idle one",
                 limits_.max_clients);
    evicting_ = true;
  }
  auto victim = std::find_if(clients_.begin(), clients_.end(),
                             [](const Client& c) { return c.phase != Phase::kWriting; });
  clients_.erase(victim == clients_.end() ? clients_.begin() : victim);
}

void AdminLoop::set_phase(Client& client, Phase phase) {
  if (epoll_events(phase) != epoll_events(client.phase) && phase != Phase::kDone &&
      !epoll_watch(epoll_.get(), EPOLL_CTL_MOD, client.fd.get(), epoll_events(phase), client_token(client))) {
    phase = Phase::kDone;  // ENOMEM: nothing better to do than let this client go
  }
  client.phase = phase;
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
      set_phase(client, Phase::kDone);
      return;
    }
    const std::string_view received(chunk.data(), static_cast<std::size_t>(n));
    client.request.append(received);
    // The parser's verdict can change only when a line ends or the cap is reached: parsing on every
    // byte of a trickle would cost the square of the request's length.
    if (received.find('\n') == std::string_view::npos && client.request.size() < limits_.max_request_bytes) {
      continue;
    }
    const HttpParse parse = parse_http_request(client.request, limits_.max_request_bytes);
    if (parse.status != HttpParseStatus::kIncomplete) {
      respond(client, route(parse, metrics_text_));
      return;
    }
  }
}

void AdminLoop::respond(Client& client, const Response& response) {
  client.request.clear();
  client.request.shrink_to_fit();
  client.reply = serialize(response);
  write_reply(client);  // the socket is almost always writable: skip a wait
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
      set_phase(client, Phase::kWriting);
      return;
    }
    if (n < 0) {
      set_phase(client, Phase::kDone);
      return;
    }
    client.sent += static_cast<std::size_t>(n);
  }
  client.reply.clear();
  client.reply.shrink_to_fit();
  if (shutdown(client.fd.get(), SHUT_WR) != 0) {
    set_phase(client, Phase::kDone);  // ENOTCONN: the peer is gone already
    return;
  }
  set_phase(client, Phase::kDraining);
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
    set_phase(client, Phase::kDone);
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
    return system_error(errno,
                        fmt::format("cannot create the admin server's eventfd: {}", std::strerror(errno)));
  }
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (epoll.get() < 0 ||
      !epoll_watch(epoll.get(), EPOLL_CTL_ADD, wake.get(), EPOLLIN, fixed_token(kWakeToken)) ||
      !epoll_watch(epoll.get(), EPOLL_CTL_ADD, listener->get(), EPOLLIN, fixed_token(kListenerToken))) {
    return system_error(errno,
                        fmt::format("cannot set up the admin server's epoll: {}", std::strerror(errno)));
  }
  auto impl = std::make_unique<Impl>();
  impl->port = *bound;
  impl->loop = std::make_unique<AdminLoop>(std::move(epoll), std::move(*listener), std::move(wake),
                                           std::move(metrics_text), limits);
  try {
    impl->thread = std::thread([loop = impl->loop.get()] { loop->run(); });
  } catch (const std::system_error& e) {
    return system_error(e.code().value(), fmt::format("cannot start the admin server thread: {}", e.what()));
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
  impl_->loop.reset();  // closes the listener, the eventfd, the epoll set and any client still connected
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
