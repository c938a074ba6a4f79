// Relay bodies for command-line programs: bounded reading and one-line display (relay_body.hpp).
#include "clients/cpp/relay_body.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "core/protocol.hpp"

namespace ringhub::client {

namespace {

// One step of UTF-8 validation: the length of the well-formed sequence at `s`, or 0.
std::size_t utf8_sequence_length(std::span<const std::uint8_t> s) {
  const std::uint8_t lead = s[0];
  if (lead < 0x80) {
    return 1;
  }
  const std::size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 ? 2 : 0;
  if (n == 0 || lead > 0xF4 || s.size() < n) {
    return 0;
  }
  for (std::size_t i = 1; i < n; ++i) {
    if ((s[i] & 0xC0) != 0x80) {
      return 0;
    }
  }
  // Reject overlong forms, UTF-16 surrogates and code points past U+10FFFF.
  const bool bad = (lead == 0xE0 && s[1] < 0xA0) || (lead == 0xED && s[1] >= 0xA0) ||
                   (lead == 0xF0 && s[1] < 0x90) || (lead == 0xF4 && s[1] >= 0x90);
  return bad ? 0 : n;
}

}  // namespace

// One byte past the bound is read, and no more: `yes | ringhub-client relay` must not grow this process
// without end.
Result<std::vector<std::uint8_t>> read_body(std::istream& in, const std::string& name) {
  const auto cannot_read = [&name](int err) {
    return system_error(err, fmt::format("cannot read {}: {}", name, std::system_category().message(err)));
  };
  constexpr std::size_t kLimit = protocol::kMaxBodySize;
  std::vector<std::uint8_t> bytes(kLimit + 1);
  errno = 0;
  try {
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  } catch (const std::ios_base::failure&) {  // a filebuf's failed read (a directory: EISDIR) throws
    return cannot_read(errno != 0 ? errno : EIO);
  }
  if (in.bad()) {
    return cannot_read(errno != 0 ? errno : EIO);
  }
  const auto got = static_cast<std::size_t>(in.gcount());
  if (got > kLimit) {
    return system_error(EMSGSIZE,
                        fmt::format("a relay body holds at most {} bytes; {} has more", kLimit, name));
  }
  bytes.resize(got);
  return bytes;
}

bool is_printable_text(std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    const std::size_t n = utf8_sequence_length(bytes);
    const bool control = n == 1 && ((bytes[0] < 0x20 && bytes[0] != '\t') || bytes[0] == 0x7F);
    if (n == 0 || control) {
      return false;
    }
    bytes = bytes.subspan(n);
  }
  return true;
}

std::string describe_body(std::span<const std::uint8_t> body) {
  std::span<const std::uint8_t> text = body;
  if (!text.empty() && text.back() == '\n') {
    text = text.first(text.size() - 1);
  }
  if (is_printable_text(text)) {
    return std::string(text.begin(), text.end());
  }
  const auto preview = body.first(std::min(body.size(), kHexPreviewBytes));
  return fmt::format("<{} bytes, hex: {:02x}{}>", body.size(), fmt::join(preview, ""),
                     preview.size() < body.size() ? "..." : "");
}

}  // namespace ringhub::client
