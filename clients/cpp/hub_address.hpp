// Where a hub is: resolving a host name (or an IPv4/IPv6 literal) into the addresses the engine's
// connects try in turn, and the "host:port" text error messages show.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/endpoint_text.hpp"
#include "core/result.hpp"
#include "transport/uring/socket_address.hpp"

namespace ringhub::client {

using ringhub::endpoint_text;  // core/endpoint_text.hpp

// The addresses `host` resolves to, in the resolver's order: "localhost" may name ::1 before 127.0.0.1
// while the hub listens on 127.0.0.1 only, so a client tries each until one answers. Errors read
// "cannot resolve hub host 'HOST': why". Not bounded by any deadline: getaddrinfo() offers no way to.
Result<std::vector<uring::SocketAddress>> resolve_hub(const std::string& host, std::uint16_t port);

}  // namespace ringhub::client
