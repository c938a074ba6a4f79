// Tests for transport/uring/event_loop on a real io_uring (skipped where it is refused): each turn hands
// every ready completion to the handler, poll never blocks, the idle poll catches a completion only
// while it is on, and a stream parked for buffers is handed back once a buffer is published again.
#include "transport/uring/event_loop.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "tests/transport/uring/completions.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub::uring {
namespace {

constexpr unsigned kBuffers = 2;
constexpr std::uint32_t kBufferSize = 64;
constexpr std::uint64_t kFirst = 16;  // user_data of the test's NOPs (any values but kUnwatched)
constexpr std::uint64_t kSecond = 32;

// Records what the loop hands it.
class RecordingHandler final : public LoopHandler {
 public:
  void on_completion(const io_uring_cqe& cqe) override { completed.push_back(cqe.user_data); }
  void on_buffers_back(Stream& stream) override { resumed.push_back(&stream); }

  std::vector<std::uint64_t> completed;
  std::vector<Stream*> resumed;
};

class UringEventLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Result<void> ready = loop_.init({.sq_entries = 8,
                                         .cq_entries = 16,
                                         .table_size = 0,
                                         .task_run = TaskRun::kDeferred,
                                         .buffer_count = kBuffers,
                                         .buffer_size = kBufferSize});
        !ready) {
      GTEST_SKIP() << ready.error().message;
    }
  }

  void queue_nop(std::uint64_t user_data) {
    io_uring_sqe* entry = loop_.ring().next_sqe();
    io_uring_prep_nop(entry);
    io_uring_sqe_set_data64(entry, user_data);
  }

  // Waits, turn after turn, until `count` completions have reached the handler or the patience ends.
  void wait_for(std::size_t count) {
    const auto give_up = std::chrono::steady_clock::now() + testing::kPatience;
    while (handler_.completed.size() < count && std::chrono::steady_clock::now() < give_up) {
      __kernel_timespec step{.tv_sec = 0, .tv_nsec = 100'000'000};
      loop_.wait(&step);
    }
  }

  RecordingHandler handler_;
  EventLoop loop_{handler_, "test loop"};
};

TEST_F(UringEventLoop, WaitHandsEveryReadyCompletionToTheHandler) {
  queue_nop(kFirst);
  queue_nop(kSecond);
  wait_for(2);
  EXPECT_EQ(handler_.completed, (std::vector<std::uint64_t>{kFirst, kSecond}));
}

TEST_F(UringEventLoop, PollSubmitsAndHandlesWhatIsReadyWithoutBlocking) {
  EXPECT_EQ(loop_.poll(), 0U);  // nothing queued: returns at once rather than waiting
  queue_nop(kFirst);
  EXPECT_EQ(loop_.poll(), 1U);  // a NOP completes at submit: ready within the same poll
  EXPECT_EQ(handler_.completed, (std::vector<std::uint64_t>{kFirst}));
}

TEST_F(UringEventLoop, IdlePollCatchesACompletionOnlyWhileOn) {
  queue_nop(kFirst);
  const IdlePoll<> off(std::chrono::microseconds{0});
  EXPECT_EQ(loop_.poll_while(off), 0U);  // off: the caller goes on to sleep, nothing is submitted
  EXPECT_TRUE(handler_.completed.empty());

  IdlePoll<> on(std::chrono::seconds{1});
  on.worked();
  EXPECT_EQ(loop_.poll_while(on), 1U);
  EXPECT_EQ(handler_.completed, (std::vector<std::uint64_t>{kFirst}));
}

TEST_F(UringEventLoop, ParkedStreamIsHandedBackOnceABufferIsPublished) {
  // Both buffers out, as if the kernel had filled them and their readers still held them.
  BlockRef first = loop_.buffers().take(0);
  BlockRef second = loop_.buffers().take(1);
  Stream parked;
  loop_.park_for_buffers(parked);
  loop_.park_for_buffers(parked);  // parked once, however often its recv ran out
  loop_.poll();
  EXPECT_TRUE(handler_.resumed.empty());  // no buffer back: a re-armed recv would fail again

  first.reset();  // recycled: the loop publishes it before it looks at the parked streams
  loop_.poll();
  EXPECT_EQ(handler_.resumed, (std::vector<Stream*>{&parked}));
  EXPECT_FALSE(parked.waiting());

  second.reset();
  loop_.poll();
  EXPECT_EQ(handler_.resumed.size(), 1U);  // handed back once
}

}  // namespace
}  // namespace ringhub::uring
