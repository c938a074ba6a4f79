// The admin plane's bounded HTTP/1.x request parser; see core/http_request.hpp.
#include "core/http_request.hpp"

#include <algorithm>
#include <cstdlib>
#include <optional>

namespace ringhub {

namespace {

constexpr std::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";

// RFC 9110 tchar: what a method or a header name is made of.
bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         kTokenPunctuation.find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// A request target: visible ASCII only (no space, no control byte, no DEL, nothing above 0x7E).
bool is_target_char(char c) {
  return c > ' ' && c < '\x7f';
}

// A header value: visible ASCII, space, tab and obs-text (bytes 0x80 and up); no other control byte.
bool is_field_value_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return c == '\t' || (byte >= 0x20 && byte != 0x7f);
}

// The next line of `bytes` from `pos`, without its LF or CRLF, moving `pos` past it; nullopt when no
// LF has arrived yet.
std::optional<std::string_view> next_line(std::string_view bytes, std::size_t& pos) {
  const std::size_t lf = bytes.find('\n', pos);
  if (lf == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view line = bytes.substr(pos, lf - pos);
  if (line.ends_with('\r')) {
    line.remove_suffix(1);
  }
  pos = lf + 1;
  return line;
}

// The path of a request target: origin-form ("/metrics?x") as it is; absolute-form
// ("http://host:port/metrics", which RFC 9112 asks a server to accept) from its path on; asterisk-form
// ("*", for OPTIONS) an empty one. Nothing for anything else.
std::optional<std::string_view> target_path(std::string_view target) {
  if (target.starts_with('/')) {
    return target;
  }
  if (target == "*") {
    return std::string_view{};
  }
  // Schemes are case-insensitive (RFC 3986): "HTTP://host/metrics" is the same target.
  const auto starts_with_scheme = [target](std::string_view scheme) {
    return target.size() >= scheme.size() &&
           std::equal(scheme.begin(), scheme.end(), target.begin(),
                      [](char s, char t) { return s == (t >= 'A' && t <= 'Z' ? t - 'A' + 'a' : t); });
  };
  for (const std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (starts_with_scheme(scheme)) {
      const std::string_view rest = target.substr(scheme.size());
      const std::size_t slash = rest.find_first_of("/?");
      if (slash == std::string_view::npos || rest[slash] == '?') {
        return std::string_view("/");  // "http://host" and "http://host?q" ask for the root
      }
      return rest.substr(slash);
    }
  }
  return std::nullopt;
}

// "METHOD SP target SP HTTP/1.x", one space each; sets status (and method and path if it is ours).
HttpParse parse_request_line(std::string_view line) {
  HttpParse out;
  out.status = HttpParseStatus::kBadRequest;
  const std::size_t first = line.find(' ');
  const std::size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos) {
    return out;
  }
  const std::string_view method = line.substr(0, first);
  const std::string_view target = line.substr(first + 1, second - first - 1);
  const std::string_view version = line.substr(second + 1);
  const std::optional<std::string_view> path = target_path(target);
  if (!is_token(method) || !path || !std::all_of(target.begin(), target.end(), is_target_char) ||
      (version != "HTTP/1.1" && version != "HTTP/1.0")) {
    return out;
  }
  if (method != "GET" && method != "HEAD") {
    out.status = HttpParseStatus::kMethodNotAllowed;
    return out;
  }
  if (path->empty()) {
    return out;  // "*" is a target for OPTIONS only
  }
  out.status = HttpParseStatus::kIncomplete;  // well-formed so far: the headers decide the rest
  out.method = method == "GET" ? HttpMethod::kGet : HttpMethod::kHead;
  out.path = path->substr(0, path->find('?'));
  return out;
}

// "name: value". A line starting with white space (obsolete folding) or a space before the colon is
// refused, as RFC 9112 asks of a server.
bool is_valid_header(std::string_view line) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
    return false;
  }
  const std::string_view value = line.substr(colon + 1);
  return std::all_of(value.begin(), value.end(), is_field_value_char);
}

}  // namespace

HttpParse parse_http_request(std::string_view received, std::size_t max_bytes) {
  const std::string_view bytes = received.substr(0, std::min(received.size(), max_bytes));
  const auto too_large = [&] {
    HttpParse out;
    out.status = HttpParseStatus::kTooLarge;
    return out;
  };
  const auto need_more = [&] { return bytes.size() >= max_bytes ? too_large() : HttpParse{}; };
  std::size_t pos = 0;
  const std::optional<std::string_view> request_line = next_line(bytes, pos);
  if (!request_line) {
    return need_more();
  }
  HttpParse out = parse_request_line(*request_line);
  if (out.status != HttpParseStatus::kIncomplete) {
    return out;
  }
  for (std::size_t headers = 0;; ++headers) {
    const std::optional<std::string_view> line = next_line(bytes, pos);
    if (!line) {
      return need_more();
    }
    if (line->empty()) {
      out.status = HttpParseStatus::kComplete;
      out.consumed = pos;
      return out;
    }
    if (headers == kHttpMaxHeaders) {
      return too_large();
    }
    if (!is_valid_header(*line)) {
      HttpParse bad;
      bad.status = HttpParseStatus::kBadRequest;
      return bad;
    }
  }
}

void fuzz_http_request(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const HttpParse parse = parse_http_request(input);
  const bool path_inside =
      parse.path.empty() ||
      (parse.path.data() >= input.data() && parse.path.data() + parse.path.size() <= input.data() + size);
  const bool complete = parse.status == HttpParseStatus::kComplete;
  if (!path_inside || parse.consumed > size || complete != parse.path.starts_with('/') ||
      (parse.status == HttpParseStatus::kIncomplete && size >= kHttpMaxRequestBytes)) {
    std::abort();  // a contract the admin loop relies on is broken: the fuzzer reports the input
  }
}

}  // namespace ringhub
