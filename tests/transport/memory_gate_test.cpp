// Tests for transport/memory_gate, without a ring or a socket: the verdicts follow the budget's
// watermarks (with the read-ahead hysteresis), paused connections are let in by weight at their own
// watermark, and large-frame reservations stop at the low watermark except the one frame that always
// proceeds, are granted first come first served, and all go back.
#include "transport/memory_gate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "tests/transport/gate_fixture.hpp"

namespace ringhub {
namespace {

// The fixture (a one-shard hub's shared state, a gate, connections) is tests/transport/gate_fixture.
using gate_testing::kBudget;
using MemoryGateTest = gate_testing::GateFixture;

TEST_F(MemoryGateTest, VerdictsFollowTheWatermarks) {
  const MemoryBudget& budget = shared_.budget;
  const auto light = connection(false);
  const auto heavy = connection(true);

  EXPECT_FALSE(gate_.update().gate);
  EXPECT_TRUE(gate_.open());
  EXPECT_FALSE(gate_.must_pause(*light));
  EXPECT_FALSE(gate_.must_pause(*heavy));

  set_memory_in_use(budget.high_watermark());
  EXPECT_TRUE(gate_.update().gate) << "into the reserve: heavy senders must stop";
  EXPECT_FALSE(gate_.open());
  EXPECT_FALSE(gate_.must_pause(*light));
  EXPECT_TRUE(gate_.must_pause(*heavy));

  set_memory_in_use(budget.limit());
  EXPECT_TRUE(gate_.update().gate) << "at the budget: everyone must stop";
  EXPECT_TRUE(gate_.must_pause(*light));
  EXPECT_TRUE(gate_.must_pause(*heavy));
  EXPECT_EQ(gate_.hub_memory(), static_cast<std::int64_t>(budget.limit()));

  set_memory_in_use(0);
  EXPECT_FALSE(gate_.update().gate) << "a gate that widens stops nobody";
  EXPECT_TRUE(gate_.open());
  EXPECT_FALSE(gate_.must_pause(*heavy));
}

TEST_F(MemoryGateTest, AReservedFrameIsNeverPaused) {
  const auto conn = begun_large_frame(1U << 20);
  ASSERT_TRUE(gate_.reserve_large_frame(*conn, false));
  set_memory_in_use(shared_.budget.limit());
  gate_.update();
  EXPECT_FALSE(gate_.must_pause(*conn)) << "its frame is paid for: it is read to its end";
  gate_.end_reservation(*conn);
  EXPECT_TRUE(gate_.must_pause(*conn));
}

TEST_F(MemoryGateTest, ReadAheadNarrowsAndWidensAgainWithAGap) {
  const std::uint32_t wide = gate_.read_ahead_limit();
  set_memory_in_use(kBudget / 8);
  EXPECT_TRUE(gate_.update().read_ahead);
  const std::uint32_t narrow = gate_.read_ahead_limit();
  EXPECT_LT(narrow, wide);
  EXPECT_TRUE(MemoryGate::beyond_narrow_read_ahead(wide));
  EXPECT_FALSE(MemoryGate::beyond_narrow_read_ahead(narrow));

  set_memory_in_use(kBudget / 8 - 1);
  EXPECT_FALSE(gate_.update().read_ahead);
  EXPECT_EQ(gate_.read_ahead_limit(), narrow) << "just below where it narrowed, it stays narrow";
  set_memory_in_use(kBudget / 16 - 1);
  EXPECT_FALSE(gate_.update().read_ahead);
  EXPECT_EQ(gate_.read_ahead_limit(), wide);
}

TEST_F(MemoryGateTest, PausedConnectionsAreLetInByWeightAtTheirOwnWatermark) {
  const MemoryBudget& budget = shared_.budget;
  const auto light = connection(false);
  const auto heavy = connection(true);
  set_memory_in_use(budget.limit());
  gate_.update();
  gate_.pause(*heavy);
  gate_.pause(*light);
  EXPECT_TRUE(light->read_paused);
  EXPECT_EQ(gate_.paused_count(), 2U);
  gate_.resume_ready();
  EXPECT_TRUE(log_.resumed.empty()) << "nobody comes back while the budget is full";

  set_memory_in_use(budget.low_watermark());  // below the high watermark, not below the low one
  gate_.update();
  gate_.resume_ready();
  ASSERT_EQ(log_.resumed, std::vector<Connection*>{light.get()});
  EXPECT_FALSE(light->read_paused);
  EXPECT_TRUE(heavy->read_paused);
  EXPECT_EQ(gate_.paused_count(), 1U);

  set_memory_in_use(budget.low_watermark() - 1);
  gate_.update();
  gate_.resume_ready();
  ASSERT_EQ(log_.resumed, (std::vector<Connection*>{light.get(), heavy.get()}));
  EXPECT_EQ(gate_.paused_count(), 0U);
  EXPECT_EQ(gate_.pauses(), 2U) << "every pause is counted, also once resumed";
}

TEST_F(MemoryGateTest, ReservationsStopAtTheLowWatermarkButOneFrameAlwaysProceeds) {
  constexpr std::uint32_t kFrame = 1U << 20;
  const auto first = begun_large_frame(kFrame);
  const auto second = begun_large_frame(kFrame);
  const std::int64_t need = kFrame - first->assembler.partial_frame_filled();

  set_memory_in_use(shared_.budget.low_watermark() - need / 2);
  gate_.update();
  EXPECT_FALSE(gate_.reserve_large_frame(*first, false)) << "it would reserve past the low watermark";
  EXPECT_EQ(reserved(), 0);
  EXPECT_TRUE(gate_.reserve_large_frame(*first, true)) << "with none under way, one frame proceeds";
  EXPECT_EQ(reserved(), need);
  EXPECT_EQ(frames_under_way(), 1);
  EXPECT_FALSE(gate_.reserve_large_frame(*second, true)) << "only while none is under way";

  gate_.consume_reservation(*first, first->assembler.partial_frame_filled() + 1000);
  EXPECT_EQ(reserved(), need - 1000) << "what its block now charges leaves the reservation";
  gate_.end_reservation(*first);
  EXPECT_EQ(reserved(), 0);
  EXPECT_EQ(frames_under_way(), 0);
  EXPECT_FALSE(first->frame_reserved);
}

TEST_F(MemoryGateTest, WaitingFramesAreGrantedFirstComeFirstServed) {
  constexpr std::uint32_t kFrame = 1U << 20;
  const auto holder = begun_large_frame(kFrame);
  const auto first = begun_large_frame(kFrame);
  const auto second = begun_large_frame(kFrame);
  set_memory_in_use(shared_.budget.low_watermark());
  gate_.update();
  ASSERT_TRUE(gate_.reserve_large_frame(*holder, true));
  gate_.await_reservation(*first);
  gate_.await_reservation(*second);
  gate_.resume_ready();
  EXPECT_TRUE(log_.resumed.empty());
  EXPECT_EQ(gate_.paused_count(), 2U);

  gate_.end_reservation(*holder);
  gate_.resume_ready();
  ASSERT_EQ(log_.resumed, std::vector<Connection*>{first.get()}) << "the next in line waits for this one";
  EXPECT_TRUE(first->frame_reserved);
  EXPECT_TRUE(second->read_paused);

  gate_.forget(*first);
  EXPECT_EQ(frames_under_way(), 0);
  gate_.resume_ready();
  ASSERT_EQ(log_.resumed, (std::vector<Connection*>{first.get(), second.get()}));
  gate_.end_reservation(*second);
  EXPECT_EQ(reserved(), 0);
  EXPECT_EQ(gate_.paused_count(), 0U);
}

TEST_F(MemoryGateTest, AWaitingConnectionWhoseFrameIsGoneIsLetInWithoutAReservation) {
  const auto conn = begun_large_frame(1U << 20);
  set_memory_in_use(shared_.budget.limit());
  gate_.update();
  const auto holder = begun_large_frame(1U << 20);
  ASSERT_TRUE(gate_.reserve_large_frame(*holder, true));
  gate_.await_reservation(*conn);
  conn->assembler.reset();  // as when the hub drains it: the frame will never be read
  gate_.resume_ready();
  ASSERT_EQ(log_.resumed, std::vector<Connection*>{conn.get()});
  EXPECT_FALSE(conn->frame_reserved);
  gate_.end_reservation(*holder);
  EXPECT_EQ(frames_under_way(), 0) << "it must not count as a large frame under way";
  EXPECT_EQ(reserved(), 0);
}

// Line connections throttled while holding messages back are let in once hub memory falls below 5/8,
// whatever they still hold (LineService takes it in as the allowance and memory allow); they count as
// paused meanwhile. Falling below 3/8 is reported once: what every connection held is then taken in.
TEST_F(MemoryGateTest, ThrottledLineConnectionsAreLetInWhenMemoryFalls) {
  const std::size_t sixteenth = shared_.budget.limit() / 16;
  const auto first = connection();
  const auto second = connection();
  const auto forgotten = connection();
  set_memory_in_use(12 * sixteenth);
  gate_.update();
  ASSERT_TRUE(gate_.holds_back_lines());
  ASSERT_TRUE(gate_.throttles_held_lines());
  for (Connection* conn : {first.get(), second.get(), forgotten.get()}) {
    gate_.throttle_lines(*conn);
    EXPECT_TRUE(conn->line_throttled);
  }
  EXPECT_EQ(gate_.paused_count(), 3U);
  gate_.forget(*forgotten);
  EXPECT_FALSE(forgotten->line_throttled);
  gate_.end_line_throttle(*second);  // it holds nothing back any more (the shard resumes it)
  EXPECT_FALSE(second->waiting());
  EXPECT_EQ(gate_.paused_count(), 1U);

  set_memory_in_use(10 * sixteenth);
  EXPECT_FALSE(gate_.update().lines_released);
  gate_.resume_ready();
  EXPECT_TRUE(log_.resumed.empty()) << "between the marks it stays throttled";
  set_memory_in_use(10 * sixteenth - 1);
  EXPECT_FALSE(gate_.update().lines_released) << "still past 3/8: messages are still held back";
  gate_.resume_ready();
  ASSERT_EQ(log_.resumed, std::vector<Connection*>{first.get()});
  EXPECT_FALSE(first->line_throttled);
  EXPECT_FALSE(first->waiting());
  EXPECT_EQ(gate_.paused_count(), 0U);
  EXPECT_TRUE(gate_.holds_back_lines());

  set_memory_in_use(6 * sixteenth - 1);
  EXPECT_TRUE(gate_.update().lines_released);
  EXPECT_FALSE(gate_.holds_back_lines());
  EXPECT_FALSE(gate_.update().lines_released) << "reported once";
}

TEST_F(MemoryGateTest, ForgetTakesAPausedConnectionOffItsList) {
  const auto conn = connection(true);
  set_memory_in_use(shared_.budget.limit());
  gate_.update();
  gate_.pause(*conn);
  gate_.forget(*conn);
  EXPECT_FALSE(conn->read_paused);
  EXPECT_FALSE(conn->waiting());
  EXPECT_EQ(gate_.paused_count(), 0U);
  set_memory_in_use(0);
  gate_.update();
  gate_.resume_ready();
  EXPECT_TRUE(log_.resumed.empty()) << "a forgotten connection is never let in";
}

}  // namespace
}  // namespace ringhub
