// Tests for core/result: an Error's code is read with its domain, so an errno and a protocol ErrorCode
// of the same number are told apart, and an explaining error keeps its cause's domain and code.
#include "core/result.hpp"

#include <gtest/gtest.h>

#include <cerrno>

namespace ringhub {
namespace {

using protocol::ErrorCode;

TEST(ErrorTest, EachMakerSetsItsDomain) {
  EXPECT_EQ(make_error("bad flag").domain, ErrorDomain::kNone);
  EXPECT_EQ(make_error("bad flag").code, 0);
  EXPECT_EQ(system_error(ETIMEDOUT, "timed out").domain, ErrorDomain::kSystem);
  EXPECT_EQ(system_error(ETIMEDOUT, "timed out").code, ETIMEDOUT);
  EXPECT_EQ(protocol_error(ErrorCode::kServerFull, "full").domain, ErrorDomain::kProtocol);
  EXPECT_EQ(protocol_error(ErrorCode::kServerFull, "full").code, static_cast<int>(ErrorCode::kServerFull));
  EXPECT_EQ(usage_error("budget too small").domain, ErrorDomain::kUsage);
  EXPECT_EQ(usage_error("budget too small").code, 0);
}

TEST(ErrorTest, AnErrnoAndAProtocolCodeOfTheSameNumberDiffer) {
  static_assert(EPERM == static_cast<int>(ErrorCode::kUnknownType));  // the clash the domain is for
  const Error system = system_error(EPERM, "not permitted");
  const Error hub = protocol_error(ErrorCode::kUnknownType, "hub closed the connection: error 1");
  EXPECT_TRUE(system.is_system(EPERM));
  EXPECT_FALSE(system.is_protocol(ErrorCode::kUnknownType));
  EXPECT_TRUE(hub.is_protocol(ErrorCode::kUnknownType));
  EXPECT_FALSE(hub.is_system(EPERM));
  EXPECT_FALSE(make_error("closed").is_system(0));
}

TEST(ErrorTest, RephraseKeepsTheCause) {
  const Error why = rephrase(system_error(ECONNREFUSED, "refused"), "cannot reach hub: refused");
  EXPECT_TRUE(why.is_system(ECONNREFUSED));
  EXPECT_EQ(why.message, "cannot reach hub: refused");
}

TEST(ResultTest, CarriesAValueOrAnError) {
  const Result<int> value = 7;
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 7);
  const Result<int> failed = system_error(EINVAL, "no");
  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(failed.error().is_system(EINVAL));
  const Result<void> done;
  EXPECT_TRUE(done.ok());
  const Result<void> refused = make_error("no");
  EXPECT_FALSE(refused.ok());
}

}  // namespace
}  // namespace ringhub
