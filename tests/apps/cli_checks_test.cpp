// Tests for apps/cli_checks: whole numbers in range pass, anything else fails with a message that
// says what the flag takes, through a real CLI11 parse as the mains do it.
#include "apps/cli_checks.hpp"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ringhub::cli {
namespace {

// Parses `--n VALUE`; the error message, or "" when it parsed.
template <typename T>
std::string parse(T& field, const CLI::Validator& check, const std::string& value) {
  CLI::App app;
  app.add_option("--n", field)->check(check);
  std::vector<std::string> args{value, "--n"};  // CLI11 takes them in reverse
  try {
    app.parse(args);
  } catch (const CLI::ParseError& error) {
    return error.what();
  }
  return {};
}

TEST(CliChecks, PositiveTakesOneAndUpAndSaysSoOtherwise) {
  std::size_t count = 0;
  EXPECT_EQ(parse(count, positive(count), "1"), "");
  EXPECT_EQ(count, 1U);
  EXPECT_EQ(parse(count, positive(count), "100000"), "");
  for (const std::string bad : {"0", "-5", "1.5", "x", "12abc", ""}) {
    const std::string message = parse(count, positive(count), bad);
    EXPECT_NE(message.find("must be a whole number of at least 1, not '" + bad + "'"), std::string::npos)
        << bad << ": " << message;
  }
}

// A number past the field's type is out of range, not "at least 1" (probe 8: --frame-timeout-ms 4294967296).
TEST(CliChecks, PositivePastTheTypeNamesItsMaximum) {
  std::uint32_t milliseconds = 0;
  for (const std::string bad : {"4294967296", "99999999999999999999"}) {
    EXPECT_NE(parse(milliseconds, positive(milliseconds), bad)
                  .find("must be a whole number from 1 to 4294967295, not '" + bad + "'"),
              std::string::npos)
        << bad;
  }
  EXPECT_EQ(parse(milliseconds, positive(milliseconds), "4294967295"), "");
}

TEST(CliChecks, WholeNumberInARangeNamesTheRange) {
  unsigned value = 0;
  const CLI::Validator check = whole_number(value, 2U, 32768U);
  EXPECT_EQ(parse(value, check, "2"), "");
  EXPECT_EQ(parse(value, check, "32768"), "");
  EXPECT_NE(parse(value, check, "32769").find("must be a whole number from 2 to 32768, not '32769'"),
            std::string::npos);
  EXPECT_NE(parse(value, check, "1").find("from 2 to 32768"), std::string::npos);
}

TEST(CliChecks, ZeroOrARange) {
  unsigned value = 7;
  const CLI::Validator check = zero_or(value, 2U, 32768U);
  EXPECT_EQ(parse(value, check, "0"), "");
  EXPECT_EQ(value, 0U);
  EXPECT_EQ(parse(value, check, "2"), "");
  for (const std::string bad : {"1", "32769", "x", "-1"}) {
    EXPECT_NE(parse(value, check, bad).find("must be 0 or 2 to 32768, not " + bad), std::string::npos) << bad;
  }
}

TEST(CliChecks, PortNumberSaysTheRange) {
  std::uint16_t port = 7400;
  EXPECT_EQ(parse(port, port_number(port), "0"), "");
  EXPECT_EQ(port, 0U);
  EXPECT_EQ(parse(port, port_number(port), "65535"), "");
  EXPECT_EQ(port, 65535U);
  for (const std::string bad : {"65536", "70000", "-1", "abc", ""}) {
    const std::string message = parse(port, port_number(port), bad);
    EXPECT_NE(message.find("must be a port from 0 to 65535, not '" + bad + "'"), std::string::npos)
        << bad << ": " << message;
  }
}

}  // namespace
}  // namespace ringhub::cli
