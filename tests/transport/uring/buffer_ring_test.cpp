// Tests for transport/uring/ring and buffer_ring on a real io_uring (skipped where io_uring is
// refused): SQE acquisition past a full SQ, reaping, the opcode probe, and the provided-buffer ring's
// take / release / publish cycle as the kernel sees it (a recv on an empty ring fails with ENOBUFS),
// and that a kCooperative ring signals a registered eventfd without being entered.
#include "transport/uring/buffer_ring.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <thread>

#include "transport/uring/ring.hpp"

namespace ringhub::uring {
namespace {

// Small rings: the tests queue a handful of operations at once.
constexpr unsigned kSqEntries = 4;
constexpr unsigned kCqEntries = 64;
constexpr unsigned kTableSize = 16;
constexpr std::uint32_t kBufferSize = 64;
// Opcodes are 8 bits and no kernel has this many (IORING_OP_LAST of the headers may be older than
// the kernel, so it cannot serve).
constexpr int kNoSuchOpcode = 255;

// A connected pair of ordinary stream sockets; closed with the test.
struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0) << std::strerror(errno); }
  ~SocketPair() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
};

// What the tests read of a completion (io_uring_cqe itself ends in a flexible array: not copied).
struct Completion {
  int res = 0;
  std::uint32_t flags = 0;
};

// One completion, waiting for it; every operation queued here completes without outside help.
Completion wait_one(Ring& ring) {
  Completion seen;
  unsigned reaped = 0;
  while (reaped == 0) {
    const int ret = ring.submit_and_wait();
    EXPECT_FALSE(enter_failed(ret)) << std::strerror(-ret);
    reaped = ring.reap([&seen](const io_uring_cqe& cqe) { seen = {cqe.res, cqe.flags}; });
  }
  EXPECT_EQ(reaped, 1U);
  return seen;
}

// A one-shot recv on `fd` into a buffer the kernel picks from the ring's group.
Completion recv_into_group(Ring& ring, int fd) {
  io_uring_sqe* sqe = ring.next_sqe();
  io_uring_prep_recv(sqe, fd, nullptr, kBufferSize, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BufferRing::kGroupId;
  return wait_one(ring);
}

std::uint16_t buffer_id(const Completion& cqe) {
  EXPECT_NE(cqe.flags & IORING_CQE_F_BUFFER, 0U);
  return static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
}

// A ring on the test's thread, or a skip when the kernel or a seccomp filter refuses io_uring.
class UringRing : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Result<void> ready = ring_.init(kSqEntries, kCqEntries, kTableSize); !ready) {
      GTEST_SKIP() << ready.error().message;
    }
  }
  Ring ring_;
};

// The ring with two provided buffers and a socket pair whose bytes it receives.
class UringBufferRing : public UringRing {
 protected:
  void SetUp() override {
    UringRing::SetUp();
    if (IsSkipped()) {
      return;
    }
    auto created = BufferRing::create(ring_.get(), 2, kBufferSize);
    ASSERT_TRUE(created) << created.error().message;
    buffers_ = std::move(*created);
  }
  // Writes `bytes` into the pair and receives them with a one-shot recv into a provided buffer.
  Completion send_and_receive(std::string_view bytes) {
    EXPECT_EQ(write(pair_.fds[0], bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    return recv_into_group(ring_, pair_.fds[1]);
  }
  std::unique_ptr<BufferRing> buffers_;  // declared after ring_: goes first
  SocketPair pair_;
};

TEST_F(UringRing, NextSqeSubmitsWhenTheQueueIsFullAndReapSeesEveryCompletion) {
  Ring& ring = ring_;
  constexpr unsigned kNops = kSqEntries * 3;
  for (unsigned i = 0; i < kNops; ++i) {
    io_uring_prep_nop(ring.next_sqe());
  }
  unsigned reaped = 0;
  while (reaped < kNops) {
    ASSERT_FALSE(enter_failed(ring.submit_and_wait()));
    reaped += ring.reap([](const io_uring_cqe& cqe) { EXPECT_EQ(cqe.res, 0); });
  }
  EXPECT_EQ(reaped, kNops);
  EXPECT_EQ(ring.cq_overflows(), 0U);
  EXPECT_TRUE(ring.supports(IORING_OP_NOP));
  EXPECT_FALSE(ring.supports(kNoSuchOpcode));
}

TEST_F(UringRing, CloseIsIdempotent) {
  EXPECT_TRUE(ring_.ready());
  ring_.close();
  EXPECT_FALSE(ring_.ready());
  ring_.close();
}

TEST_F(UringRing, BufferCountRoundsUpToAPowerOfTwoAndAllStartInTheRing) {
  auto buffers = BufferRing::create(ring_.get(), 5, kBufferSize);
  ASSERT_TRUE(buffers) << buffers.error().message;
  EXPECT_EQ((*buffers)->count(), 8U);
  EXPECT_EQ((*buffers)->held(), 0U);
  EXPECT_EQ((*buffers)->recycled(), 0U);
  EXPECT_FALSE(BufferRing::create(ring_.get(), BufferRing::kMaxEntries + 1, kBufferSize));
}

// This process's resident memory, from /proc/self/statm.
std::int64_t resident_bytes() {
  long pages = 0;
  long resident = 0;
  FILE* statm = std::fopen("/proc/self/statm", "r");
  EXPECT_NE(statm, nullptr);
  EXPECT_EQ(std::fscanf(statm, "%ld %ld", &pages, &resident), 2);
  std::fclose(statm);
  return std::int64_t{resident} * sysconf(_SC_PAGESIZE);
}

// 64 buffers of 64 KiB: 4 MiB, far above what anything else in the test touches meanwhile.
constexpr unsigned kResidencyBuffers = 64;
constexpr std::uint32_t kResidencyBufferSize = 64U << 10;
constexpr std::int64_t kResidencyPoolBytes = std::int64_t{kResidencyBuffers} * kResidencyBufferSize;

TEST_F(UringRing, PopulatedBuffersAreResidentFromTheStart) {
  const std::int64_t before = resident_bytes();
  auto buffers = BufferRing::create(ring_.get(), kResidencyBuffers, kResidencyBufferSize);
  ASSERT_TRUE(buffers) << buffers.error().message;
  EXPECT_GE(resident_bytes() - before, kResidencyPoolBytes);
}

TEST_F(UringRing, OnDemandBuffersCostNothingUntilUsed) {
  const std::int64_t before = resident_bytes();
  auto buffers = BufferRing::create(ring_.get(), kResidencyBuffers, kResidencyBufferSize,
                                    BufferRing::Residency::kOnDemand);
  ASSERT_TRUE(buffers) << buffers.error().message;
  EXPECT_LT(resident_bytes() - before, kResidencyPoolBytes / 4);
}

// An eventfd registered on `ring`; closed with the test.
struct RegisteredEventFd {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  explicit RegisteredEventFd(Ring& ring) {
    EXPECT_GE(fd, 0) << std::strerror(errno);
    const int ret = ring.register_eventfd(fd);
    EXPECT_EQ(ret, 0) << std::strerror(-ret);
  }
  ~RegisteredEventFd() { ::close(fd); }
  // Whether the ring signalled it within `timeout_ms` (a bound on a failure, not a speed target).
  bool signalled_within(int timeout_ms) const {
    pollfd pfd{fd, POLLIN, 0};
    return poll(&pfd, 1, timeout_ms) == 1;
  }
};

// How long a test waits for a wake-up that should take microseconds.
constexpr int kWakeTimeoutMs = 10'000;

// A thread that drives several rings sleeps in poll() on one eventfd (transport/shard_thread.cpp):
// a recv that completes on a kCooperative ring it is not inside must wake it, with its completion
// already posted.
TEST(UringRingTaskRun, ACooperativeRingSignalsItsEventfdForARecvWithoutBeingEntered) {
  Ring ring;
  if (Result<void> ready = ring.init(kSqEntries, kCqEntries, kTableSize, TaskRun::kCooperative); !ready) {
    GTEST_SKIP() << ready.error().message;
  }
  const RegisteredEventFd wake(ring);
  SocketPair pair;
  char byte = 0;
  io_uring_prep_recv(ring.next_sqe(), pair.fds[1], &byte, 1, 0);
  ASSERT_FALSE(enter_failed(ring.submit_and_get_events()));
  EXPECT_FALSE(ring.needs_enter());
  std::thread writer([&pair] { EXPECT_EQ(write(pair.fds[0], "x", 1), 1); });
  EXPECT_TRUE(wake.signalled_within(kWakeTimeoutMs));
  writer.join();
  // The completion was posted by the time the eventfd woke the thread: nothing has entered the ring.
  // (A kDeferred ring signals when the work is queued, and posts only when its thread enters it.)
  EXPECT_EQ(io_uring_cq_ready(ring.get()), 1U);
  EXPECT_EQ(wait_one(ring).res, 1);
  EXPECT_EQ(byte, 'x');
}

TEST(UringRingTaskRun, ACooperativeRingNeedsEnteringWhileSqesAreQueuedOnly) {
  Ring ring;
  if (Result<void> ready = ring.init(kSqEntries, kCqEntries, kTableSize, TaskRun::kCooperative); !ready) {
    GTEST_SKIP() << ready.error().message;
  }
  EXPECT_FALSE(ring.needs_enter());
  io_uring_prep_nop(ring.next_sqe());
  EXPECT_TRUE(ring.needs_enter());
  EXPECT_EQ(wait_one(ring).res, 0);
  EXPECT_FALSE(ring.needs_enter());
}

TEST_F(UringBufferRing, TakenBufferHoldsTheBytesUntilTheLastReferenceGoesThenIsPublished) {
  BufferRing& buffers = *buffers_;
  constexpr std::string_view kHello = "hello";
  const Completion cqe = send_and_receive(kHello);
  ASSERT_EQ(cqe.res, static_cast<int>(kHello.size()));
  BlockRef taken = buffers.take(buffer_id(cqe));
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(taken.data()), kHello.size()), kHello);
  EXPECT_EQ(buffers.held(), 1U);
  EXPECT_EQ(buffers.bytes_held(), kBufferSize);

  BlockRef copy = taken;  // the hub's relay: one more sender points at it
  taken.reset();
  EXPECT_EQ(buffers.held(), 1U);
  EXPECT_EQ(buffers.recycled(), 0U);
  copy.reset();  // the client loop's case: dropped right after its handler
  EXPECT_EQ(buffers.held(), 0U);
  EXPECT_EQ(buffers.recycled(), 1U);
  EXPECT_EQ(buffers.publish_recycled(), 1U);
  EXPECT_EQ(buffers.recycled(), 0U);
  EXPECT_EQ(buffers.publish_recycled(), 0U);
}

TEST_F(UringBufferRing, AnEmptyRingRefusesRecvsUntilABufferIsPublished) {
  BufferRing& buffers = *buffers_;
  constexpr std::string_view kByte = "x";
  BlockRef held[2];
  for (BlockRef& ref : held) {
    const Completion cqe = send_and_receive(kByte);
    ASSERT_EQ(cqe.res, 1);
    ref = buffers.take(buffer_id(cqe));
  }
  EXPECT_EQ(buffers.held(), 2U);

  EXPECT_EQ(send_and_receive(kByte).res, -ENOBUFS);  // the byte stays in the socket

  held[0].reset();
  EXPECT_EQ(recv_into_group(ring_, pair_.fds[1]).res, -ENOBUFS);  // recycled is not yet published
  EXPECT_EQ(buffers.publish_recycled(), 1U);
  const Completion again = recv_into_group(ring_, pair_.fds[1]);
  ASSERT_EQ(again.res, 1);
  const BlockRef last = buffers.take(buffer_id(again));
  EXPECT_EQ(buffers.held(), 2U);
}

}  // namespace
}  // namespace ringhub::uring
