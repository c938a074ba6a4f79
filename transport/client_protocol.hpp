// Which protocol a listener or a connection speaks: the binary relay protocol or the text line
// protocol. Named once here, so per-protocol state is a table indexed by it rather than by a bool.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace ringhub {

enum class Protocol : std::uint8_t {
  kRelay,  // length-prefixed binary frames (core/protocol.hpp, docs/protocol.md)
  kLine,   // newline-terminated text commands (core/line_protocol.hpp)
};

// Every protocol, in index order: for loops over each listener or table row.
inline constexpr std::array<Protocol, 2> kProtocols = {Protocol::kRelay, Protocol::kLine};

// One T per protocol, indexed by Protocol.
template <class T>
struct PerProtocol {
  std::array<T, kProtocols.size()> values{};

  T& operator[](Protocol protocol) { return values[static_cast<std::size_t>(protocol)]; }
  const T& operator[](Protocol protocol) const { return values[static_cast<std::size_t>(protocol)]; }
  auto begin() { return values.begin(); }
  auto end() { return values.end(); }
};

}  // namespace ringhub
