// Tests for transport/uring/tag.hpp, the one user_data encoding of every ring: a pointer or a number
// with the kind in the low bits round-trips for the hub's owners and kinds and for the client loop's.
#include "transport/uring/tag.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "transport/connection.hpp"
#include "transport/op_tag.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub {
namespace {

// Every hub kind, in declaration order (Op::kRecvDirect is the last).
constexpr Op kLastHubOp = Op::kRecvDirect;

TEST(UringTag, HubConnectionOwnerAndEveryHubKindRoundTrip) {
  static_assert(alignof(Connection) >= uring::kTagAlignment);
  std::vector<std::unique_ptr<Connection>> conns;  // the shard allocates each one with new
  for (std::uint32_t slot = 0; slot < 3; ++slot) {
    conns.push_back(std::make_unique<Connection>(slot, nullptr, nullptr));
  }
  for (const auto& conn : conns) {
    for (unsigned kind = 0; kind <= static_cast<unsigned>(kLastHubOp); ++kind) {
      const std::uint64_t data = tag(conn.get(), static_cast<Op>(kind));
      EXPECT_EQ(tag_op(data), static_cast<Op>(kind));
      EXPECT_EQ(tag_owner<Connection>(data), conn.get());
    }
  }
}

TEST(UringTag, ClientConnOwnerAndEveryClientKindRoundTrip) {
  using ClientOp = uring::ClientLoop::Op;
  static_assert(alignof(uring::ClientConn) >= uring::kTagAlignment);
  std::vector<uring::ClientConn> conns(5);  // the engine keeps its Conns in a vector too
  for (uring::ClientConn& conn : conns) {
    for (unsigned kind = 0; kind <= static_cast<unsigned>(ClientOp::kClose); ++kind) {
      const std::uint64_t data = uring::tag(&conn, static_cast<ClientOp>(kind));
      EXPECT_EQ(uring::tag_kind<ClientOp>(data), static_cast<ClientOp>(kind));
      EXPECT_EQ(uring::tag_owner<uring::ClientConn>(data), &conn);
    }
  }
}

TEST(UringTag, NumberOwnersRoundTripAboveTheKindBits) {
  for (const std::uint64_t number :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{63}, std::uint64_t{1} << 40}) {
    const std::uint64_t data = tag_number(number, Op::kOutbox);
    EXPECT_EQ(tag_op(data), Op::kOutbox);
    EXPECT_EQ(tag_number_of(data), number);
  }
}

TEST(UringTag, NoOwnerCarriesOnlyTheKind) {
  EXPECT_EQ(tag(nullptr, Op::kStop), static_cast<std::uint64_t>(Op::kStop));
  EXPECT_EQ(tag_owner<Connection>(tag(nullptr, Op::kStop)), nullptr);
}

TEST(UringTag, KindFitsChecksTheLowBits) {
  enum class Wide : std::uint8_t { kFits = 15, kTooWide = 16 };
  EXPECT_TRUE(uring::kind_fits(Wide::kFits));
  EXPECT_FALSE(uring::kind_fits(Wide::kTooWide));
}

}  // namespace
}  // namespace ringhub
