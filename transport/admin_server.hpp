// The admin plane: a tiny HTTP/1.1 server for GET /metrics and GET /healthz on a port of its own.
// One thread, one epoll loop over non-blocking sockets, off the shards' io_urings on purpose: an
// operator scrapes when the hub is in trouble, so it must answer even while every shard is saturated,
// and however many idle or slow sockets sit on the admin port (see docs/design.md, "Admin plane").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/http_request.hpp"
#include "core/result.hpp"

namespace ringhub {

// A connection gets this long from its accept to send its request and read the reply (the whole
// exchange); then it is closed, with a 408 if its request never came whole. A local scrape takes
// milliseconds; a scraper across a slow link still gets seconds.
inline constexpr std::chrono::milliseconds kAdminClientTimeout{5000};

// Request line plus headers; past this the reply is 431 (core/http_request.hpp).
inline constexpr std::size_t kAdminMaxRequestBytes = kHttpMaxRequestBytes;

// Connections held at once. At the cap a new connection is still accepted and the oldest one that is
// not being answered is closed to make room: idle or slow sockets can never lock a scraper out, which
// a refusal (or a wait in the listen backlog) would let them do. Each costs at most
// kAdminMaxRequestBytes of request plus its reply.
inline constexpr std::size_t kAdminMaxClients = 128;

struct AdminLimits {
  std::chrono::milliseconds client_timeout = kAdminClientTimeout;
  std::size_t max_request_bytes = kAdminMaxRequestBytes;
  std::size_t max_clients = kAdminMaxClients;
};

// Owns the listening socket and the admin thread; created and stopped by the control thread.
// Each connection carries one request and is closed after the reply (Connection: close). Clients are
// served at once, each bounded by AdminLimits, so no client can block another or stop(); nothing a
// client sends is waited for except within its own deadline.
// `metrics_text` runs on the admin thread once per GET /metrics: it must be safe to call from there
// (Hub::stats() is). Replies: /metrics 200 (Prometheus 0.0.4 text), /healthz 200 "ok\n", other paths
// 404, methods other than GET and HEAD 405, a malformed request 400, an oversized one 431, a request
// not whole by its deadline 408.
class AdminServer {
 public:
  using MetricsText = std::function<std::string()>;

  // Binds address:port (port 0 = the kernel picks one) and starts the thread. Fails with a message a
  // user can act on: invalid address, port in use.
  static Result<std::unique_ptr<AdminServer>> start(const std::string& address, std::uint16_t port,
                                                    MetricsText metrics_text, const AdminLimits& limits = {});

  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;
  ~AdminServer();  // stops if still running

  std::uint16_t port() const;

  // Wakes the admin thread, closes every client and the listener, and joins. Returns promptly even
  // with clients connected. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Process figures for MetricsExtras, read from /proc; 0 when unavailable.
std::uint64_t read_resident_memory_bytes();  // resident pages (/proc/self/statm) times the page size
// Entries of /proc/self/fd, less the one this call opens. Sockets held as io_uring direct descriptors
// live in the rings' file tables, not the fd table, so they are not counted.
std::uint64_t count_open_fds();

}  // namespace ringhub
