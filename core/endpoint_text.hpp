// How a host and a port are written in addresses, URLs and messages: an IPv6 literal goes in brackets
// ("[::1]:7400"), so its colons cannot be read as the port's.
#pragma once

#include <cstdint>
#include <string>

namespace ringhub {

// `host`, bracketed when it is an IPv6 literal (the only kind of host with a colon in it).
inline std::string host_text(const std::string& host) {
  return host.find(':') == std::string::npos ? host : "[" + host + "]";
}

// "host:port", or "[host]:port" for an IPv6 literal.
inline std::string endpoint_text(const std::string& host, std::uint16_t port) {
  return host_text(host) + ":" + std::to_string(port);
}

}  // namespace ringhub
