// Tests for transport/read_policy, without a ring: the recv each connection gets (multishot with the
// gate's read-ahead, or one buffer at a time and how much of it), what resuming it arms in each state,
// and when an armed multishot must stop.
#include "transport/read_policy.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include "tests/transport/gate_fixture.hpp"
#include "transport/op_tag.hpp"

namespace ringhub {
namespace {

class ReadPolicyTest : public gate_testing::GateFixture {
 protected:
  // A relay connection that has completed a frame of `frame_bytes`.
  std::unique_ptr<Connection> proven(std::size_t frame_bytes = 64) {
    auto conn = connection();
    conn->frames_in = 1;
    classify_by_frame(*conn, frame_bytes);
    return conn;
  }
  std::unique_ptr<Connection> line_connection() {
    auto conn = connection();
    conn->protocol = Protocol::kLine;
    return conn;
  }
  // `conn` has a multishot recv armed with `limit`.
  static void armed_multishot(Connection& conn, std::uint32_t limit) {
    conn.recv_armed = true;
    conn.recv_op = Op::kRecv;
    conn.recv_limit = limit;
  }
  void past_high_watermark() {
    set_memory_in_use(shared_.budget.high_watermark());
    gate_.update();
  }
  void where_held_lines_are_throttled() {
    set_memory_in_use(shared_.budget.high_watermark());
    gate_.update();
    ASSERT_TRUE(gate_.throttles_held_lines());
  }

  ReadPolicy policy_{gate_};
};

TEST_F(ReadPolicyTest, ANewRelayConnectionReadsOneCappedBufferUntilItsFirstFrame) {
  const auto conn = connection();
  const uring::RecvShape first = policy_.recv_shape(*conn);
  EXPECT_FALSE(first.multishot);
  EXPECT_EQ(first.one_shot_cap, kPressureReadBytes) << "its first header comes with little behind it";

  conn->frames_in = 1;
  const uring::RecvShape then = policy_.recv_shape(*conn);
  EXPECT_TRUE(then.multishot);
  EXPECT_EQ(then.multishot_limit, gate_.read_ahead_limit());
}

TEST_F(ReadPolicyTest, ALineConnectionIsReadOneWholeBufferAtATime) {
  const auto conn = line_connection();
  conn->frames_in = 1;
  const uring::RecvShape shape = policy_.recv_shape(*conn);
  EXPECT_FALSE(shape.multishot) << "a throttle on what it holds back applies between reads";
  EXPECT_EQ(shape.one_shot_cap, 0U);
}

// A line connection that holds messages back is throttled only from the high watermark: below it, it is
// read on, so the oks a client queued behind its own messages arrive.
TEST_F(ReadPolicyTest, ALineConnectionHoldingMessagesBackIsThrottledOnlyFromTheHighWatermark) {
  const auto conn = line_connection();
  conn->frames_in = 1;
  EXPECT_EQ(policy_.next_step(*conn, true), ReadStep::kRecv);
  set_memory_in_use(shared_.budget.high_watermark() - 1);
  gate_.update();
  EXPECT_EQ(policy_.next_step(*conn, true), ReadStep::kRecv);
  where_held_lines_are_throttled();
  EXPECT_EQ(policy_.next_step(*conn, true), ReadStep::kThrottleLines);
  EXPECT_EQ(policy_.next_step(*conn, false), ReadStep::kRecv) << "holding nothing back, it is read";
}

TEST_F(ReadPolicyTest, PastTheHighWatermarkEveryoneReadsOneCappedBuffer) {
  const auto relay = proven();
  const auto line = line_connection();
  past_high_watermark();
  for (const Connection* conn : {relay.get(), line.get()}) {
    const uring::RecvShape shape = policy_.recv_shape(*conn);
    EXPECT_FALSE(shape.multishot);
    EXPECT_EQ(shape.one_shot_cap, kPressureReadBytes);
  }
}

TEST_F(ReadPolicyTest, FrameSizesSetTheClassAndPartialFramesOnlyRaiseIt) {
  const auto conn = proven(kLightFrameBytes);
  EXPECT_FALSE(conn->heavy);
  classify_by_frame(*conn, kLightFrameBytes + 1);
  EXPECT_TRUE(conn->heavy);
  EXPECT_FALSE(conn->reads_directly);
  EXPECT_TRUE(policy_.recv_shape(*conn).multishot) << "a heavy sender still reads ahead, up to the limit";

  classify_by_frame(*conn, kDirectReadFrameBytes + 1);
  EXPECT_TRUE(conn->reads_directly);
  const uring::RecvShape shape = policy_.recv_shape(*conn);
  EXPECT_FALSE(shape.multishot) << "its next header must arrive nearly alone";
  EXPECT_EQ(shape.one_shot_cap, 0U);

  classify_by_partial_frame(*conn, 64);
  EXPECT_TRUE(conn->reads_directly) << "a partial frame cannot lower the class";
  classify_by_frame(*conn, 64);
  EXPECT_FALSE(conn->heavy);
  EXPECT_FALSE(conn->reads_directly);
  classify_by_partial_frame(*conn, kDirectReadFrameBytes + 1);
  EXPECT_TRUE(conn->heavy);
  EXPECT_TRUE(conn->reads_directly);
}

TEST_F(ReadPolicyTest, WithoutTheKernelsLimitHeavySendersReadOneBufferAtATime) {
  const auto heavy = proven(kLightFrameBytes + 1);
  const auto light = proven();
  policy_.stop_limiting_multishot();
  EXPECT_FALSE(policy_.limits_multishot());
  EXPECT_FALSE(policy_.recv_shape(*heavy).multishot);
  const uring::RecvShape shape = policy_.recv_shape(*light);
  EXPECT_TRUE(shape.multishot);
  EXPECT_EQ(shape.multishot_limit, 0U) << "the kernel refuses a limit";
}

TEST_F(ReadPolicyTest, NextStepFollowsTheConnectionsState) {
  const auto conn = proven();
  EXPECT_EQ(policy_.next_step(*conn, false), ReadStep::kRecv);
  where_held_lines_are_throttled();
  EXPECT_EQ(policy_.next_step(*conn, true), ReadStep::kThrottleLines);
  set_memory_in_use(0);
  gate_.update();

  conn->recv_armed = true;
  EXPECT_EQ(policy_.next_step(*conn, false), ReadStep::kNothing) << "already reading";
  conn->recv_armed = false;
  conn->read_paused = true;
  EXPECT_EQ(policy_.next_step(*conn, false), ReadStep::kNothing) << "the gate resumes it";
  conn->read_paused = false;

  conn->state = ConnState::kDraining;
  past_high_watermark();
  conn->heavy = true;
  EXPECT_EQ(policy_.next_step(*conn, true), ReadStep::kRecv) << "a draining connection reads to EOF";
  conn->state = ConnState::kClosing;
  EXPECT_EQ(policy_.next_step(*conn, false), ReadStep::kNothing);
}

TEST_F(ReadPolicyTest, TheBudgetPausesHeavySendersFirst) {
  const auto heavy = proven(kLightFrameBytes + 1);
  const auto light = proven();
  past_high_watermark();
  EXPECT_EQ(policy_.next_step(*heavy, false), ReadStep::kPause);
  EXPECT_EQ(policy_.next_step(*light, false), ReadStep::kRecv);
  set_memory_in_use(shared_.budget.limit());
  gate_.update();
  EXPECT_EQ(policy_.next_step(*light, false), ReadStep::kPause);
}

TEST_F(ReadPolicyTest, ALargeFrameBegunReadsDirectlyOnceItsRoomIsReserved) {
  constexpr std::uint32_t kFrame = 1U << 20;
  const auto first = begun_large_frame(kFrame);
  const auto second = begun_large_frame(kFrame);
  EXPECT_EQ(policy_.next_step(*first, false), ReadStep::kDirect);
  EXPECT_TRUE(first->frame_reserved);
  EXPECT_GT(reserved(), 0);

  set_memory_in_use(shared_.budget.limit());
  gate_.update();
  EXPECT_EQ(policy_.next_step(*first, false), ReadStep::kDirect) << "a frame begun and reserved is finished";
  EXPECT_EQ(policy_.next_step(*second, false), ReadStep::kAwaitReservation);
  EXPECT_FALSE(second->frame_reserved);
  gate_.end_reservation(*first);
}

TEST_F(ReadPolicyTest, AMultishotStopsAfterInputThatChangesHowToRead) {
  const auto conn = proven();
  armed_multishot(*conn, gate_.read_ahead_limit());
  EXPECT_FALSE(policy_.must_stop_after_input(*conn));
  classify_by_frame(*conn, kDirectReadFrameBytes + 1);
  EXPECT_TRUE(policy_.must_stop_after_input(*conn)) << "now read one buffer at a time";
  conn->recv_cancel_sent = true;
  EXPECT_FALSE(policy_.must_stop_after_input(*conn)) << "already stopping";

  const auto large = begun_large_frame(1U << 20);
  large->frames_in = 1;
  classify_by_frame(*large, 64);
  armed_multishot(*large, gate_.read_ahead_limit());
  EXPECT_TRUE(policy_.must_stop_after_input(*large)) << "the frame's rest goes by direct receive";
  large->state = ConnState::kDraining;
  EXPECT_FALSE(policy_.must_stop_after_input(*large)) << "a draining connection's input is discarded";
}

TEST_F(ReadPolicyTest, ANarrowedGateStopsOnlyWhatItNowKeepsOut) {
  const auto heavy = proven(kLightFrameBytes + 1);
  const auto light = proven();
  const std::uint32_t wide = gate_.read_ahead_limit();
  armed_multishot(*heavy, wide);
  armed_multishot(*light, wide);
  past_high_watermark();
  const MemoryGate::Narrowed gate_only{.gate = true, .read_ahead = false};
  EXPECT_TRUE(policy_.must_stop_for(*heavy, gate_only));
  EXPECT_FALSE(policy_.must_stop_for(*light, gate_only));

  const MemoryGate::Narrowed read_ahead_only{.gate = false, .read_ahead = true};
  EXPECT_TRUE(policy_.must_stop_for(*light, read_ahead_only)) << "armed to read further than now allowed";
  light->recv_limit = gate_.read_ahead_limit();
  EXPECT_FALSE(policy_.must_stop_for(*light, read_ahead_only)) << "already armed narrow";

  heavy->recv_op = Op::kRecvDirect;
  EXPECT_FALSE(policy_.must_stop_for(*heavy, gate_only)) << "a direct receive finishes its frame";
}

}  // namespace
}  // namespace ringhub
