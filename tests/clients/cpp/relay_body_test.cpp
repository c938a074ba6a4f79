// relay_body tests: reading a body within the 1 MiB bound (and refusing one byte more without reading
// on), read errors as messages, and how a delivered body is shown on one line.
#include "clients/cpp/relay_body.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/protocol.hpp"

namespace ringhub::client {
namespace {

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

TEST(ReadBody, TakesAStreamUpToTheBound) {
  std::istringstream small("foobar\n");
  Result<std::vector<std::uint8_t>> body = read_body(small, "stdin");
  ASSERT_TRUE(body);
  EXPECT_EQ(std::string(body->begin(), body->end()), "foobar\n");

  std::istringstream full(std::string(protocol::kMaxBodySize, 'x'));
  body = read_body(full, "stdin");
  ASSERT_TRUE(body);
  EXPECT_EQ(body->size(), protocol::kMaxBodySize);

  std::istringstream empty("");
  body = read_body(empty, "stdin");
  ASSERT_TRUE(body);
  EXPECT_TRUE(body->empty());
}

TEST(ReadBody, RefusesOneByteMoreWithoutReadingOn) {
  std::istringstream over(std::string(3 * protocol::kMaxBodySize, 'y'));
  const Result<std::vector<std::uint8_t>> body = read_body(over, "stdin");
  ASSERT_FALSE(body);
  EXPECT_TRUE(body.error().is_system(EMSGSIZE));
  EXPECT_NE(body.error().message.find("at most 1048576 bytes; stdin has more"), std::string::npos);
  // It stopped one byte past the bound: the rest is still in the stream.
  EXPECT_EQ(static_cast<std::size_t>(over.tellg()), protocol::kMaxBodySize + 1);
}

TEST(ReadBody, AReadErrorSaysWhatFailed) {
  const std::string directory = std::filesystem::temp_directory_path().string();
  std::ifstream file(directory, std::ios::binary);
  ASSERT_TRUE(file) << "a directory opens as a file; its first read fails";
  const Result<std::vector<std::uint8_t>> body = read_body(file, directory);
  ASSERT_FALSE(body);
  EXPECT_TRUE(body.error().is_system(EISDIR)) << body.error().message;
  EXPECT_EQ(body.error().message, "cannot read " + directory + ": Is a directory");
}

TEST(DescribeBody, TextAsItIsAnythingElseAsHex) {
  EXPECT_EQ(describe_body(bytes_of("foobar")), "foobar");
  EXPECT_EQ(describe_body(bytes_of("foobar\n")), "foobar");  // echo's newline ends the line
  EXPECT_EQ(describe_body(bytes_of("tab\there")), "tab\there");
  EXPECT_EQ(describe_body(bytes_of("gr\xc3\xbc\xc3\x9f")), "gr\xc3\xbc\xc3\x9f");
  EXPECT_EQ(describe_body(bytes_of("two\n\n")), "<5 bytes, hex: 74776f0a0a>");  // only one newline goes
  EXPECT_EQ(describe_body(bytes_of("a\rb")), "<3 bytes, hex: 610d62>");
  EXPECT_EQ(describe_body(bytes_of("\xc0\xaf")), "<2 bytes, hex: c0af>");  // an overlong '/'
  EXPECT_EQ(describe_body(bytes_of("")), "");
  std::string preview;
  for (std::size_t i = 0; i < kHexPreviewBytes; ++i) {
    preview += "01";
  }
  EXPECT_EQ(describe_body(bytes_of(std::string(100, '\x01'))), "<100 bytes, hex: " + preview + "...>");
}

}  // namespace
}  // namespace ringhub::client
