// json_string / json_strings: quotes and backslashes escaped, control characters as \u00XX.
#include "perf/stress/json_text.hpp"

#include <fmt/format.h>

namespace ringhub::stress {

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_strings(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      out += ", ";
    }
    out += json_string(items[i]);
  }
  return out + "]";
}

}  // namespace ringhub::stress
