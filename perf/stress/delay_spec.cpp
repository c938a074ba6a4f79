// DelaySpec parsing and sampling; see delay_spec.hpp.
#include "perf/stress/delay_spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string_view>

namespace ringhub::stress {

namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t nanos;
};
// Longest suffix first so "ms" is not read as "s".
constexpr Unit kUnits[] = {{"ns", 1}, {"us", 1'000}, {"ms", 1'000'000}, {"s", 1'000'000'000}};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) {
      return parts;
    }
    start = end + 1;
  }
}

// "30%" -> 0.30.
Result<double> parse_percent(const std::string& text) {
  if (text.empty() || text.back() != '%') {
    return make_error(fmt::format("weight '{}' must end in %", text));
  }
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size() - 1, value);
  if (ec != std::errc() || end != text.data() + text.size() - 1 || value <= 0 || value > 100) {
    return make_error(fmt::format("weight '{}' is not a percentage in (0, 100]", text));
  }
  return value / 100.0;
}

}  // namespace

Result<std::int64_t> parse_duration_ns(const std::string& text) {
  std::string_view number = text;
  std::int64_t scale = 1'000'000;  // a bare number is milliseconds
  for (const Unit& unit : kUnits) {
    if (number.size() > unit.suffix.size() && number.ends_with(unit.suffix)) {
      number.remove_suffix(unit.suffix.size());
      scale = unit.nanos;
      break;
    }
  }
  double value = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || value < 0 ||
      value > 3600.0 * 1e9 / static_cast<double>(scale)) {
    return make_error(fmt::format("'{}' is not a duration such as 0, 10ms, 250us or 2s", text));
  }
  return static_cast<std::int64_t>(std::llround(value * static_cast<double>(scale)));
}

Result<DelaySpec> DelaySpec::parse(const std::string& text) {
  DelaySpec spec;
  spec.text_ = text;
  double total = 0;
  const std::vector<std::string> items = split(text, ',');
  for (const std::string& item : items) {
    const std::size_t colon = item.find(':');
    double weight = 1.0;
    if (colon != std::string::npos) {
      auto parsed = parse_percent(item.substr(colon + 1));
      if (!parsed) {
        return parsed.error();
      }
      weight = *parsed;
    } else if (items.size() > 1) {
      return make_error(fmt::format("'{}': every part of a mix needs a weight, e.g. 10ms:30%", item));
    }
    const std::vector<std::string> bounds = split(item.substr(0, colon), '-');
    if (bounds.size() > 2) {
      return make_error(fmt::format("'{}' is not a delay or a range LOW-HIGH", item));
    }
    auto low = parse_duration_ns(bounds.front());
    auto high = parse_duration_ns(bounds.back());
    if (!low || !high) {
      return !low ? low.error() : high.error();
    }
    if (*high < *low) {
      return make_error(fmt::format("range '{}' ends before it starts", item));
    }
    total += weight;
    spec.choices_.push_back(Choice{*low, *high, total});
    spec.max_ns_ = std::max(spec.max_ns_, *high);
  }
  if (std::abs(total - 1.0) > 1e-6) {
    return make_error(fmt::format("the weights of '{}' add up to {}%, not 100%", text, total * 100));
  }
  return spec;
}

std::int64_t DelaySpec::sample(std::mt19937_64& rng) const {
  if (max_ns_ == 0) {
    return 0;
  }
  const double pick = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  const Choice* choice = &choices_.back();
  for (const Choice& c : choices_) {
    if (pick < c.cumulative) {
      choice = &c;
      break;
    }
  }
  if (choice->low_ns == choice->high_ns) {
    return choice->low_ns;
  }
  return std::uniform_int_distribution<std::int64_t>(choice->low_ns, choice->high_ns)(rng);
}

}  // namespace ringhub::stress
