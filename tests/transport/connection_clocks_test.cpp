// Tests for transport/connection_clocks, without a ring or a socket: a frame left partial times out
// after --frame-timeout and not before, a frame boundary or more of the same frame does not reset it,
// time the hub spent not reading is never blamed on the client, and idle connections are named
// oldest first, per protocol, only when their protocol has an idle timeout.
#include "transport/connection_clocks.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/shared_block.hpp"

namespace ringhub {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kFrameTimeout{1000};
constexpr milliseconds kRelayIdle{5000};

// Who the clocks named, in order.
struct NamedLog final : ClockEvents {
  void on_frame_timeout(Connection& conn) override { timed_out.push_back(&conn); }
  void on_idle(Connection& conn, milliseconds silent_for) override {
    idle.push_back(&conn);
    silences.push_back(silent_for);
  }
  std::vector<Connection*> timed_out;
  std::vector<Connection*> idle;
  std::vector<milliseconds> silences;
};

class ConnectionClocksTest : public ::testing::Test {
 protected:
  ConnectionClocksTest() : clocks_(config_, log_) { accounting_.memory = &memory_; }

  static HubConfig config() {
    HubConfig config;
    config.frame_timeout = kFrameTimeout;
    config.relay_idle_timeout = kRelayIdle;
    config.line_idle_timeout = milliseconds{0};  // off
    return config;
  }

  std::unique_ptr<Connection> connection(Protocol protocol = Protocol::kRelay) {
    auto conn = std::make_unique<Connection>(next_slot_++, &accounting_, &memory_);
    conn->protocol = protocol;
    return conn;
  }

  // Feeds `conn` the first `bytes` of an IDENTITY request's header: a frame left partial.
  static void send_part_of_a_header(Connection& conn, std::uint32_t bytes) {
    std::vector<std::uint8_t> frame;
    codec::append_identity_request(frame);
    BlockRef input = HeapBlock::create(bytes);
    std::copy_n(frame.begin(), bytes, input.data());
    conn.assembler.feed(input, 0, bytes, [](FrameView&&) { return true; });
  }

  static ShardTime at(milliseconds t) { return ShardTime(t); }

  HubConfig config_ = config();
  NamedLog log_;
  ConnectionClocks clocks_;
  MemoryAccount memory_;
  AssemblyAccounting accounting_;
  std::uint32_t next_slot_ = 0;
};

TEST_F(ConnectionClocksTest, APartialFrameTimesOutAfterTheFrameTimeoutAndNotBefore) {
  const auto conn = connection();
  send_part_of_a_header(*conn, 3);
  clocks_.clock_partial_frame(*conn, at(milliseconds{100}));

  clocks_.expire(at(milliseconds{100} + kFrameTimeout - milliseconds{1}));
  EXPECT_TRUE(log_.timed_out.empty());
  send_part_of_a_header(*conn, 1);  // more of the same frame: its clock keeps running
  clocks_.clock_partial_frame(*conn, at(milliseconds{900}));
  clocks_.expire(at(milliseconds{100} + kFrameTimeout));
  ASSERT_EQ(log_.timed_out, std::vector<Connection*>{conn.get()});
  EXPECT_EQ(clocks_.frame_timeouts(), 1U);

  clocks_.expire(at(milliseconds{100} + 3 * kFrameTimeout));
  EXPECT_EQ(log_.timed_out.size(), 1U) << "a connection is named once";
}

TEST_F(ConnectionClocksTest, AFrameBoundaryStopsTheClock) {
  const auto conn = connection();
  send_part_of_a_header(*conn, 3);
  clocks_.clock_partial_frame(*conn, at(milliseconds{0}));
  conn->assembler.reset();  // as when the rest of the frame arrives: at a boundary again
  clocks_.clock_partial_frame(*conn, at(milliseconds{10}));
  clocks_.expire(at(10 * kFrameTimeout));
  EXPECT_TRUE(log_.timed_out.empty());
  EXPECT_FALSE(conn->assembling_hook.is_linked());
}

TEST_F(ConnectionClocksTest, TheNextPartialFrameStartsAClockOfItsOwn) {
  const auto conn = connection();
  send_part_of_a_header(*conn, 3);
  clocks_.clock_partial_frame(*conn, at(milliseconds{0}));
  ++conn->frames_in;  // that frame ended and the next one is partial too, later
  clocks_.clock_partial_frame(*conn, at(milliseconds{600}));
  clocks_.expire(at(kFrameTimeout));
  EXPECT_TRUE(log_.timed_out.empty()) << "the new frame's clock started at 600 ms";
  clocks_.expire(at(milliseconds{600} + kFrameTimeout));
  EXPECT_EQ(log_.timed_out, std::vector<Connection*>{conn.get()});
}

TEST_F(ConnectionClocksTest, TimeTheHubSpentNotReadingIsNotTheClients) {
  const auto conn = connection();
  send_part_of_a_header(*conn, 3);
  clocks_.clock_partial_frame(*conn, at(milliseconds{0}));
  conn->read_paused = true;
  clocks_.expire(at(kFrameTimeout));
  EXPECT_TRUE(log_.timed_out.empty()) << "paused by the hub when its time ran out: the clock restarts";

  conn->read_paused = false;
  clocks_.restart_frame_clock(*conn, at(kFrameTimeout + milliseconds{200}));  // let in again
  clocks_.expire(at(2 * kFrameTimeout + milliseconds{199}));
  EXPECT_TRUE(log_.timed_out.empty());
  clocks_.expire(at(2 * kFrameTimeout + milliseconds{200}));
  EXPECT_EQ(log_.timed_out, std::vector<Connection*>{conn.get()});
}

TEST_F(ConnectionClocksTest, IdleConnectionsAreNamedOldestFirstWithHowLongTheyWereSilent) {
  const auto first = connection();
  const auto second = connection();
  const auto third = connection();
  clocks_.note_input(*first, at(milliseconds{0}));
  clocks_.note_input(*second, at(milliseconds{100}));
  clocks_.note_input(*third, at(milliseconds{200}));
  clocks_.note_input(*first, at(milliseconds{300}));  // heard again: to the back

  clocks_.expire(at(kRelayIdle + milliseconds{150}));
  ASSERT_EQ(log_.idle, std::vector<Connection*>{second.get()});
  EXPECT_EQ(log_.silences[0], kRelayIdle + milliseconds{50});
  clocks_.expire(at(kRelayIdle + milliseconds{300}));
  EXPECT_EQ(log_.idle, (std::vector<Connection*>{second.get(), third.get(), first.get()}));
  EXPECT_EQ(clocks_.idle_closes(), 3U);
}

TEST_F(ConnectionClocksTest, AConnectionTheHubIsNotReadingIsNotIdle) {
  const auto paused = connection();
  const auto throttled = connection();
  clocks_.note_input(*paused, at(milliseconds{0}));
  clocks_.note_input(*throttled, at(milliseconds{0}));
  paused->read_paused = true;
  throttled->line_throttled = true;
  clocks_.expire(at(kRelayIdle));
  EXPECT_TRUE(log_.idle.empty());

  paused->read_paused = false;
  throttled->line_throttled = false;
  clocks_.expire(at(2 * kRelayIdle - milliseconds{1}));
  EXPECT_TRUE(log_.idle.empty()) << "their idle clocks restarted when the hub let them be";
  clocks_.expire(at(2 * kRelayIdle));
  EXPECT_EQ(log_.idle.size(), 2U);
}

TEST_F(ConnectionClocksTest, AForgottenConnectionIsNeverNamed) {
  const auto conn = connection();
  send_part_of_a_header(*conn, 3);
  clocks_.clock_partial_frame(*conn, at(milliseconds{0}));
  clocks_.note_input(*conn, at(milliseconds{0}));
  ConnectionClocks::forget(*conn);
  clocks_.expire(at(10 * kRelayIdle));
  EXPECT_TRUE(log_.timed_out.empty());
  EXPECT_TRUE(log_.idle.empty());
}

TEST_F(ConnectionClocksTest, AProtocolWithoutAnIdleTimeoutIsNeverIdle) {
  const auto line = connection(Protocol::kLine);
  clocks_.note_input(*line, at(milliseconds{0}));
  EXPECT_FALSE(line->activity_hook.is_linked());
  clocks_.expire(at(1000 * kRelayIdle));
  EXPECT_TRUE(log_.idle.empty());
}

}  // namespace
}  // namespace ringhub
