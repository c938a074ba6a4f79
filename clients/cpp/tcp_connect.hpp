// Connecting to a hub over TCP, shared by the relay and line clients: resolve the host, try each
// address with a non-blocking connect bounded by a deadline (and an optional cancel flag).
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "transport/unique_fd.hpp"
#include "transport/uring/socket_address.hpp"

namespace ringhub::client {

// "host:port", or "[host]:port" for an IPv6 literal.
std::string endpoint_text(const std::string& host, std::uint16_t port);

// Resolves `host` (a name or an IPv4/IPv6 literal) into the addresses to try, in the resolver's order,
// for the engine's connects (AsyncRelayClient). Errors read "cannot resolve hub host 'HOST': why".
Result<std::vector<uring::SocketAddress>> resolve_hub(const std::string& host, std::uint16_t port);

// Resolves host (name or literal) and connects to the first address that answers before `until`,
// as "localhost" may name ::1 while the hub listens on 127.0.0.1 only. The socket comes back
// non-blocking with TCP_NODELAY set (requests are small and each answer is awaited; Nagle would hold
// each for a round trip). Errors read "cannot reach hub at HOST:PORT: why"; a set `cancel` gives
// ECANCELED. Name resolution is not bounded by the deadline: getaddrinfo() offers no way to bound it.
Result<UniqueFd> tcp_connect(const std::string& host, std::uint16_t port,
                             std::chrono::steady_clock::time_point until,
                             const std::atomic<bool>* cancel = nullptr);

}  // namespace ringhub::client
