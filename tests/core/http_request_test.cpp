// Tests for core/http_request: GET and HEAD with their path, every verdict (400, 405, 431) on the
// bytes that decide it, a request split at every byte, the size and header caps, and the fuzz entry
// point on every prefix of tricky inputs.
#include "core/http_request.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ringhub {
namespace {

using Status = HttpParseStatus;

Status status_of(std::string_view bytes) {
  return parse_http_request(bytes).status;
}

TEST(HttpRequestTest, GetWithHeadersIsComplete) {
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: localhost:7402\r\nAccept: */*\r\n\r\n";
  const std::string received = request + "ignored body";  // the parse views it: it must outlive it
  const HttpParse parse = parse_http_request(received);
  ASSERT_EQ(parse.status, Status::kComplete);
  EXPECT_EQ(parse.method, HttpMethod::kGet);
  EXPECT_EQ(parse.path, "/metrics");
  EXPECT_EQ(parse.consumed, request.size());
}

TEST(HttpRequestTest, HeadAndHttp10AndBareLineFeedsAreAccepted) {
  const HttpParse parse = parse_http_request("HEAD /healthz HTTP/1.0\n\n");
  ASSERT_EQ(parse.status, Status::kComplete);
  EXPECT_EQ(parse.method, HttpMethod::kHead);
  EXPECT_EQ(parse.path, "/healthz");
}

TEST(HttpRequestTest, TheQueryStringIsNotPartOfThePath) {
  EXPECT_EQ(parse_http_request("GET /metrics?x=1&y HTTP/1.1\r\n\r\n").path, "/metrics");
}

TEST(HttpRequestTest, AnAbsoluteFormTargetIsReadForItsPath) {
  EXPECT_EQ(parse_http_request("GET http://127.0.0.1:7402/metrics HTTP/1.1\r\n\r\n").path, "/metrics");
  EXPECT_EQ(parse_http_request("HEAD https://hub/healthz?x HTTP/1.1\r\n\r\n").path, "/healthz");
  const HttpParse root = parse_http_request("GET http://hub HTTP/1.1\r\n\r\n");
  EXPECT_EQ(root.status, Status::kComplete);
  EXPECT_EQ(root.path, "/");
  EXPECT_EQ(parse_http_request("GET HTTP://hub/metrics HTTP/1.1\r\n\r\n").path, "/metrics");
  EXPECT_EQ(status_of("GET ftp://hub/metrics HTTP/1.1\r\n\r\n"), Status::kBadRequest);
}

TEST(HttpRequestTest, TheAsteriskTargetIsForOptionsOnly) {
  EXPECT_EQ(status_of("OPTIONS * HTTP/1.1\r\n"), Status::kMethodNotAllowed);
  EXPECT_EQ(status_of("TRACE * HTTP/1.1\r\n"), Status::kMethodNotAllowed);
  EXPECT_EQ(status_of("GET * HTTP/1.1\r\n\r\n"), Status::kBadRequest);
}

TEST(HttpRequestTest, EveryPrefixOfAGoodRequestIsIncomplete) {
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: a\r\nUser-Agent: Prometheus/2.45\r\n\r\n";
  for (std::size_t n = 0; n < request.size(); ++n) {
    EXPECT_EQ(status_of(std::string_view(request).substr(0, n)), Status::kIncomplete) << n;
  }
  EXPECT_EQ(status_of(request), Status::kComplete);
}

TEST(HttpRequestTest, MalformedRequestLinesAre400) {
  for (const std::string_view line :
       {"hello", "", "GET metrics HTTP/1.1", "GET /metrics SPDY/3", "GET /metrics HTTP/2.0",
        "GET  /metrics HTTP/1.1", "GET /metrics HTTP/1.1 extra", "G(T /metrics HTTP/1.1",
        "GET /met\x01rics HTTP/1.1", "GET /m\rx HTTP/1.1", " GET /metrics HTTP/1.1",
        "GET /metrics\tHTTP/1.1"}) {
    EXPECT_EQ(status_of(std::string(line) + "\r\n\r\n"), Status::kBadRequest) << line;
    // Decided by the request line alone: the headers need not arrive.
    EXPECT_EQ(status_of(std::string(line) + "\r\n"), Status::kBadRequest) << line;
  }
}

TEST(HttpRequestTest, MalformedHeadersAre400) {
  for (const std::string_view header : {"NoColon", ": empty name", "Bad Name: x", "Name : space before colon",
                                        " folded: x", "\tfolded: x", "Ctl: a\x01z", "Del: \x7f"}) {
    const std::string request = "GET /metrics HTTP/1.1\r\n" + std::string(header) + "\r\n\r\n";
    EXPECT_EQ(status_of(request), Status::kBadRequest) << header;
  }
  EXPECT_EQ(status_of(std::string("GET / HTTP/1.1\r\nNul: a") + '\0' + "z\r\n\r\n"), Status::kBadRequest);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nObs-Text: caf\xc3\xa9\r\n\r\n"), Status::kComplete);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nEmpty:\r\n\r\n"), Status::kComplete);
}

TEST(HttpRequestTest, OtherMethodsAre405AsSoonAsTheLineEnds) {
  EXPECT_EQ(status_of("POST /metrics HTTP/1.1\r\n"), Status::kMethodNotAllowed);
  EXPECT_EQ(status_of("DELETE /healthz HTTP/1.0\r\n\r\n"), Status::kMethodNotAllowed);
  EXPECT_EQ(status_of("get /metrics HTTP/1.1\r\n\r\n"),
            Status::kMethodNotAllowed);  // methods are case-sensitive
}

TEST(HttpRequestTest, NoBlankLineWithinTheCapIs431) {
  const std::string start = "GET /metrics HTTP/1.1\r\nX-Filler: ";
  const std::string just_under = start + std::string(kHttpMaxRequestBytes - start.size() - 1, 'a');
  EXPECT_EQ(status_of(just_under), Status::kIncomplete);
  EXPECT_EQ(status_of(just_under + "a"), Status::kTooLarge);
  EXPECT_EQ(status_of(just_under + "a\r\n\r\n"), Status::kTooLarge);  // the end came past the cap
  // A long request line with no line feed at all is as much too large.
  EXPECT_EQ(status_of("GET /" + std::string(kHttpMaxRequestBytes, 'a')), Status::kTooLarge);
  // A smaller cap given by the caller holds the same way.
  EXPECT_EQ(parse_http_request("GET /metrics HTTP/1.1\r\n", 16).status, Status::kTooLarge);
}

TEST(HttpRequestTest, MoreThanTheMaximumHeadersIs431) {
  std::string request = "GET /metrics HTTP/1.1\r\n";
  for (std::size_t i = 0; i < kHttpMaxHeaders; ++i) {
    request += "H: v\r\n";
  }
  EXPECT_EQ(status_of(request + "\r\n"), Status::kComplete);
  EXPECT_EQ(status_of(request + "H: v\r\n"), Status::kTooLarge);
}

TEST(HttpRequestTest, FuzzEntryPointHoldsOnEveryPrefixOfTrickyInputs) {
  for (const std::string& input :
       {std::string("GET /metrics?q HTTP/1.1\r\nA: b\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        std::string("\r\n\r\n\n\n"), std::string("GET /\0 HTTP/1.1\n\n", 17),
        std::string(kHttpMaxRequestBytes + 10, '\n'),
        "GET /" + std::string(kHttpMaxRequestBytes, '/') + " HTTP/1.1\r\n\r\n"}) {
    for (std::size_t n = 0; n <= input.size(); ++n) {
      fuzz_http_request(reinterpret_cast<const std::uint8_t*>(input.data()),
                        n);  // aborts on a broken contract
    }
  }
  SUCCEED();
}

}  // namespace
}  // namespace ringhub
