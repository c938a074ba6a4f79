// Relay bodies as a command-line program meets them: read from a stream within the protocol's 1 MiB
// bound (one byte more is refused without reading on), and shown on one line (text as it is, anything
// else as a hex preview).
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <span>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace ringhub::client {

// A body that is not printable text is shown as hex, cut to this many bytes to keep lines short.
inline constexpr std::size_t kHexPreviewBytes = 64;

// All of `in`, if it holds at most protocol::kMaxBodySize bytes. `name` ("stdin", a path) is for errors:
// EMSGSIZE past the bound, the read's errno when it fails (a directory: EISDIR).
Result<std::vector<std::uint8_t>> read_body(std::istream& in, const std::string& name);

// Text that prints on one line: valid UTF-8 with no control characters besides tab.
bool is_printable_text(std::span<const std::uint8_t> bytes);

// The body on one line: text as it is (one trailing newline, as `echo` adds, dropped: it ends the
// line), anything else as "<N bytes, hex: ...>".
std::string describe_body(std::span<const std::uint8_t> body);

}  // namespace ringhub::client
