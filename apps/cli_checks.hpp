// Flag checks the hub and the CLI share, each failing with a message that says what the flag takes
// (CLI11's own PositiveNumber answers 0 with "not in range 0.000000 to 1.797...e308").
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <limits>
#include <string>

namespace ringhub::cli {

// A whole number from `low` to `high`, for a flag stored in `field` (whose type it checks against).
template <typename T>
CLI::Validator whole_number(const T& field, T low, T high = std::numeric_limits<T>::max()) {
  (void)field;
  const auto check = [low, high](const std::string& text) -> std::string {
    T value{};
    const char* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data(), end, value);
    if (error == std::errc{} && stop == end && value >= low && value <= high) {
      return {};
    }
    if (high == std::numeric_limits<T>::max()) {
      return "must be a whole number of at least " + std::to_string(low) + ", not '" + text + "'";
    }
    return "must be a whole number from " + std::to_string(low) + " to " + std::to_string(high) + ", not '" +
           text + "'";
  };
  return CLI::Validator(check, "NUMBER");
}

// At least 1.
template <typename T>
CLI::Validator positive(const T& field) {
  return whole_number(field, T{1});
}

}  // namespace ringhub::cli
