// Flag checks the hub, the CLI and the harnesses share, each failing with a message that says what the
// flag takes (CLI11's own PositiveNumber answers 0 with "not in range 0.000000 to 1.797...e308"), and
// the one exit status for a command line that cannot be used.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace ringhub::cli {

// `text` as a whole number of type T, all of it; nothing if it is not one or does not fit.
template <typename T>
std::optional<T> parse_whole(const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end) {
    return std::nullopt;
  }
  return value;
}

// Whether `text` is all decimal digits yet does not fit T.
template <typename T>
bool too_large_for(const std::string& text) {
  const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  return digits && !parse_whole<T>(text);
}

// A whole number from `low` to `high`, for a flag stored in `field` (whose type it checks against).
template <typename T>
CLI::Validator whole_number(const T& field, T low, T high = std::numeric_limits<T>::max()) {
  (void)field;
  const auto check = [low, high](const std::string& text) -> std::string {
    const std::optional<T> value = parse_whole<T>(text);
    if (value && *value >= low && *value <= high) {
      return {};
    }
    // Past the type's maximum the text is still a number: "at least 1" alone would mislead.
    if (high == std::numeric_limits<T>::max() && !too_large_for<T>(text)) {
      return "must be a whole number of at least " + std::to_string(low) + ", not '" + text + "'";
    }
    return "must be a whole number from " + std::to_string(low) + " to " + std::to_string(high) + ", not '" +
           text + "'";
  };
  return CLI::Validator(check, "NUMBER");
}

// 0 (the flag's "choose for me") or a whole number from `low` to `high`.
template <typename T>
CLI::Validator zero_or(const T& field, T low, T high) {
  (void)field;
  const auto check = [low, high](const std::string& text) -> std::string {
    const std::optional<T> value = parse_whole<T>(text);
    if (value && (*value == 0 || (*value >= low && *value <= high))) {
      return {};
    }
    return "must be 0 or " + std::to_string(low) + " to " + std::to_string(high) + ", not " + text;
  };
  return CLI::Validator(check, "0 or " + std::to_string(low) + ".." + std::to_string(high));
}

// A TCP port: 0 (any free port) to 65535. CLI11 alone says "Could not convert" past 65535.
inline CLI::Validator port_number(const std::uint16_t& field) {
  (void)field;
  const auto check = [](const std::string& text) -> std::string {
    return parse_whole<std::uint16_t>(text) ? std::string()
                                            : "must be a port from 0 to 65535, not '" + text + "'";
  };
  return CLI::Validator(check, "PORT");
}

// An IPv4 or IPv6 address literal (what the hub binds to; names are not resolved there).
inline CLI::Validator ip_literal() {
  const auto check = [](const std::string& text) -> std::string {
    in6_addr v6{};
    in_addr v4{};
    const bool ok = inet_pton(AF_INET, text.c_str(), &v4) == 1 || inet_pton(AF_INET6, text.c_str(), &v6) == 1;
    return ok ? std::string() : "must be an IPv4 or IPv6 address literal, not '" + text + "'";
  };
  return CLI::Validator(check, "ADDRESS");
}

// At least 1.
template <typename T>
CLI::Validator positive(const T& field) {
  return whole_number(field, T{1});
}

// The exit status of every ringhub program given a command line it cannot use (the usual 2; CLI11's
// own codes, 100 and up, differ by the kind of mistake and mean nothing to a script).
inline constexpr int kExitUsage = 2;

// Parses the command line. On a parse error CLI11 prints its message (or, for --help, the help) and
// this returns the exit status: 0 after --help, kExitUsage otherwise. Nothing when the program goes on.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kExitUsage;
  }
  return std::nullopt;
}

}  // namespace ringhub::cli
