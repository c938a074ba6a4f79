// Tests for transport/uring/stream on a real io_uring (skipped where it is refused): cancel_io cancels
// what is in flight and nothing else, close_stream closes once nothing names the stream, and a recv out
// of buffers waits on a BufferWaitList until one is back.
#include "transport/uring/stream.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/transport/uring/completions.hpp"
#include "transport/uring/buffer_ring.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub::uring {
namespace {

constexpr unsigned kSqEntries = 8;
constexpr unsigned kCqEntries = 16;
constexpr unsigned kTableSize = 4;
constexpr std::uint32_t kSlot = 2;
constexpr std::uint32_t kBuffers = 4;
constexpr std::uint32_t kBufferSize = 64;

enum class Kind : std::uint8_t { kIgnore, kRecv, kSend, kClose };
static_assert(is_unwatched_kind(Kind::kIgnore));

// The stream's owner: its address tags the stream's requests, as a Connection's or ClientConn's does.
struct alignas(kTagAlignment) Owner : Stream {};

// A ring with one end of a socket pair installed as direct descriptor kSlot (the only reference to it:
// its ordinary fd is closed), the other end an ordinary fd the test reads.
class UringStream : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Result<void> ready = ring_.init(kSqEntries, kCqEntries, kTableSize); !ready) {
      GTEST_SKIP() << ready.error().message;
    }
    int fds[2] = {-1, -1};
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0) << std::strerror(errno);
    peer_ = fds[1];
    ASSERT_EQ(io_uring_register_files_update(ring_.get(), kSlot, &fds[0], 1), 1);
    ::close(fds[0]);
    owner_.slot = kSlot;
  }
  void TearDown() override {
    if (peer_ >= 0) {
      ::close(peer_);
    }
  }

  // The stream's recv into kBuffers provided buffers of kBufferSize bytes (none is given back).
  void arm_recv(const RecvShape& shape = {}) {
    if (!buffers_) {
      auto created = BufferRing::create(ring_.get(), kBuffers, kBufferSize);
      ASSERT_TRUE(created) << created.error().message;
      buffers_ = std::move(*created);
    }
    uring::arm_recv(ring_, owner_, tag(&owner_, Kind::kRecv), shape);
  }
  void peer_writes(std::string_view bytes) {
    ASSERT_EQ(::write(peer_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  testing::Completions complete(unsigned count) { return testing::complete(ring_, count); }

  Ring ring_;
  std::unique_ptr<BufferRing> buffers_;  // declared after ring_: goes first
  Owner owner_;
  int peer_ = -1;
};

TEST_F(UringStream, NothingInFlightMeansNoCancelIsQueued) {
  cancel_io(ring_, owner_, tag(&owner_, Kind::kRecv), tag(&owner_, Kind::kSend));
  EXPECT_EQ(io_uring_sq_ready(ring_.get()), 0U);
  EXPECT_TRUE(owner_.closable());
}

TEST_F(UringStream, CancelIoEndsTheArmedRecvThenCloseStreamClosesTheSocket) {
  arm_recv();
  ASSERT_EQ(io_uring_submit(ring_.get()), 1);  // the recv waits: the peer sends nothing
  cancel_io(ring_, owner_, tag(&owner_, Kind::kRecv), tag(&owner_, Kind::kSend));
  EXPECT_EQ(io_uring_sq_ready(ring_.get()), 1U);  // the recv's cancel only: no send is in flight
  const testing::Completions seen = complete(2);
  ASSERT_EQ(seen.count(tag(&owner_, Kind::kRecv)), 1U);
  EXPECT_EQ(seen.find(tag(&owner_, Kind::kRecv))->second.res, -ECANCELED);
  ASSERT_EQ(seen.count(kUnwatched), 1U);  // the cancel's own completion
  EXPECT_EQ(seen.find(kUnwatched)->second.res, 0);

  owner_.recv_armed = false;
  --owner_.pending_ops;
  ASSERT_TRUE(owner_.closable());
  close_stream(ring_, owner_, tag(&owner_, Kind::kClose));
  EXPECT_TRUE(owner_.close_sent);
  EXPECT_FALSE(owner_.closable());  // a second close is never issued
  const testing::Completions closed = complete(1);
  ASSERT_EQ(closed.count(tag(&owner_, Kind::kClose)), 1U);
  EXPECT_EQ(closed.begin()->second.res, 0);
  // The direct descriptor was the socket's last reference: the peer reads end of file.
  char byte = 0;
  EXPECT_EQ(::read(peer_, &byte, 1), 0);
}

TEST_F(UringStream, ArmRecvReadsOneShotUpToItsCapOrMultishotUntilCancelled) {
  peer_writes("abcdef");
  arm_recv({.multishot = false, .one_shot_cap = 4});
  EXPECT_TRUE(owner_.recv_armed);
  EXPECT_EQ(owner_.pending_ops, 1U);
  const testing::Completions one_shot = complete(1);
  ASSERT_EQ(one_shot.size(), 1U);
  ASSERT_EQ(one_shot.count(tag(&owner_, Kind::kRecv)), 1U);
  const testing::Completion first = one_shot.begin()->second;
  EXPECT_EQ(first.res, 4);  // the cap, not the buffer's 64 bytes
  EXPECT_NE(first.flags & IORING_CQE_F_BUFFER, 0U);
  EXPECT_EQ(first.flags & IORING_CQE_F_MORE, 0U);
  owner_.recv_armed = false;
  --owner_.pending_ops;

  arm_recv();  // multishot: the two bytes left now, then whatever comes next, on one SQE
  const testing::Completions rest = complete(1);
  ASSERT_EQ(rest.size(), 1U);
  EXPECT_EQ(rest.begin()->second.res, 2);
  EXPECT_NE(rest.begin()->second.flags & IORING_CQE_F_MORE, 0U);
  peer_writes("g");
  const testing::Completions more = complete(1);
  ASSERT_EQ(more.size(), 1U);
  EXPECT_EQ(more.begin()->second.res, 1);
  EXPECT_TRUE(owner_.recv_armed);
  cancel_io(ring_, owner_, tag(&owner_, Kind::kRecv), tag(&owner_, Kind::kSend));
  EXPECT_EQ(complete(2).count(tag(&owner_, Kind::kRecv)), 1U);
}

TEST_F(UringStream, ARecvOutOfBuffersWaitsParkedUntilABufferIsBack) {
  peer_writes(std::string(kBuffers * kBufferSize + 1, 'x'));  // one byte more than the buffers hold
  arm_recv();
  const testing::Completions seen = complete(kBuffers + 1);
  std::vector<BlockRef> taken;
  int last = 0;
  for (const auto& [user_data, completion] : seen) {
    if ((completion.flags & IORING_CQE_F_BUFFER) != 0) {
      taken.push_back(
          buffers_->take(static_cast<std::uint16_t>(completion.flags >> IORING_CQE_BUFFER_SHIFT)));
    }
    last = completion.res;
  }
  ASSERT_EQ(taken.size(), kBuffers);
  ASSERT_EQ(last, -ENOBUFS);  // the multishot recv ended: the last byte waits in the socket
  owner_.recv_armed = false;
  --owner_.pending_ops;

  BufferWaitList waits;
  waits.park(owner_);
  waits.park(owner_);  // parked once, however often its recv runs out
  EXPECT_TRUE(owner_.waiting());
  unsigned resumed = 0;
  const auto resume = [&resumed](Stream&) { ++resumed; };
  waits.resume_if_buffers(*buffers_, resume);
  EXPECT_EQ(resumed, 0U) << "every buffer is still out: re-arming now would fail again";

  taken.pop_back();  // back from its user, not yet in the ring
  waits.resume_if_buffers(*buffers_, resume);
  EXPECT_EQ(resumed, 0U) << "the buffer is not published yet";
  buffers_->publish_recycled();
  waits.resume_if_buffers(*buffers_, resume);
  EXPECT_EQ(resumed, 1U);
  EXPECT_FALSE(owner_.waiting());
  EXPECT_TRUE(waits.empty());
  arm_recv();  // re-armed, it reads the byte that waited
  const testing::Completions rest = complete(1);
  ASSERT_EQ(rest.size(), 1U);
  EXPECT_EQ(rest.begin()->second.res, 1);
  cancel_io(ring_, owner_, tag(&owner_, Kind::kRecv), tag(&owner_, Kind::kSend));
  complete(2);
}

TEST_F(UringStream, AStreamWithRequestsInFlightIsNotClosable) {
  arm_recv();
  EXPECT_FALSE(owner_.closable());
  cancel_io(ring_, owner_, tag(&owner_, Kind::kRecv), tag(&owner_, Kind::kSend));
  complete(2);
}

}  // namespace
}  // namespace ringhub::uring
