// Fuzz target for core/http_request: the admin plane re-parses everything a connection has sent each
// time a line ends, so every prefix of a request is parsed too. A verdict (anything but kIncomplete)
// reached on a prefix must be the verdict on every longer input; a complete request's path views the
// input and starts with '/'; nothing is consumed past the input; max_bytes bytes always bring a verdict.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/http_request.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace ringhub::fuzz {
namespace {

// The request cap for each mode (FuzzInput::mode): small caps so inputs reach kTooLarge, and the default.
constexpr std::array<std::size_t, 16> kMaxBytesByMode = {
    1, 2, 8, 16, 17, 18, 24, 32, 48, 64, 100, 128, 256, 1024, 4096, kHttpMaxRequestBytes};

bool same_verdict(const HttpParse& a, const HttpParse& b) {
  return a.status == b.status && a.method == b.method && a.path == b.path && a.consumed == b.consumed;
}

void check_contract(std::string_view input, const HttpParse& parse, std::size_t max_bytes) {
  const bool complete = parse.status == HttpParseStatus::kComplete;
  require(parse.path.empty() || (parse.path.data() >= input.data() &&
                                 parse.path.data() + parse.path.size() <= input.data() + input.size()),
          "the path views the input");
  require(complete == parse.path.starts_with('/'), "a complete request, and only one, has a '/' path");
  require(parse.consumed <= input.size(), "nothing consumed past the input");
  require(!complete || parse.consumed <= max_bytes, "a complete request fits the cap");
  require(parse.status != HttpParseStatus::kIncomplete || input.size() < max_bytes,
          "max_bytes bytes always bring a verdict");
}

void run(const FuzzInput& input) {
  const std::string_view whole(reinterpret_cast<const char*>(input.stream.data()), input.stream.size());
  const std::size_t max_bytes = kMaxBytesByMode[input.mode];
  const HttpParse final_parse = parse_http_request(whole, max_bytes);
  check_contract(whole, final_parse, max_bytes);
  for (const std::size_t cut : input.cuts) {
    const std::string_view prefix = whole.substr(0, cut);
    const HttpParse early = parse_http_request(prefix, max_bytes);
    check_contract(prefix, early, max_bytes);
    if (early.status != HttpParseStatus::kIncomplete) {
      // Paths are compared by content: the prefix and the whole view the same bytes.
      require(same_verdict(early, final_parse), "a verdict on a prefix is the verdict on the whole");
    }
  }
  fuzz_http_request(input.stream.data(), input.stream.size());  // the parser's own contract check
}

}  // namespace
}  // namespace ringhub::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (const auto input = ringhub::fuzz::parse_fuzz_input(data, size)) {
    ringhub::fuzz::run(*input);
  }
  return 0;
}
