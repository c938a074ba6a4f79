// parse_http_request: the admin plane's HTTP/1.x request parser, pure and bounded. It reads a request
// line and headers from the bytes received so far and says: need more, a GET/HEAD for this path, or
// the 4xx to answer. No allocation, no system call: a libFuzzer target is one call (see the end).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ringhub {

// Request line plus headers. A scraper's GET is a few hundred bytes; a request not complete within
// this many bytes is answered 431.
inline constexpr std::size_t kHttpMaxRequestBytes = std::size_t{8} << 10;

// Header lines (request line not counted). Prometheus and curl send under ten; past this, 431.
inline constexpr std::size_t kHttpMaxHeaders = 64;

enum class HttpMethod : std::uint8_t { kGet, kHead };

enum class HttpParseStatus : std::uint8_t {
  kIncomplete,        // no verdict yet: read more (the caller enforces the deadline: 408)
  kComplete,          // a GET or HEAD whose headers ended; `method` and `path` are set
  kBadRequest,        // 400: not HTTP/1.0 or 1.1 as RFC 9112 spells a request line or a header
  kMethodNotAllowed,  // 405: a well-formed request line whose method is neither GET nor HEAD
  kTooLarge,          // 431: no end of headers within max_bytes, or more than kHttpMaxHeaders
};

struct HttpParse {
  HttpParseStatus status = HttpParseStatus::kIncomplete;
  HttpMethod method = HttpMethod::kGet;
  std::string_view path;     // the target without its query string; views the input
  std::size_t consumed = 0;  // bytes of request line and headers, blank line included (kComplete)
};

// Parses `received`, everything read so far on a connection (the same prefix again with more bytes
// after it on every call: the parser keeps no state). A verdict other than kIncomplete comes as soon as
// the bytes decide it: a bad request line is refused before its headers arrive. Lines end in CRLF or,
// leniently, a bare LF. Bytes after the blank line (a body, a pipelined request) are not looked at.
HttpParse parse_http_request(std::string_view received, std::size_t max_bytes = kHttpMaxRequestBytes);

// libFuzzer-ready: parses `size` bytes and aborts if a result breaks the parser's contract (a path
// outside the input or not starting with '/', consumed past the end, kIncomplete at max_bytes). A
// fuzz target is:  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) {
//                    ringhub::fuzz_http_request(d, n); return 0; }
void fuzz_http_request(const std::uint8_t* data, std::size_t size);

}  // namespace ringhub
