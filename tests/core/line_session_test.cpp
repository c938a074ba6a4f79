// LineSession tests: the self-healing line client's rules driven by a fake adapter that records every
// request, with the test as the clock and the hub. No socket, no ring, no thread.
#include "core/line_session.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace ringhub {
namespace {

constexpr std::int64_t kMs = 1'000'000;

std::span<const std::uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// Records what the session asks for; the test answers as the engine would.
class FakeIo final : public LineSessionIo {
 public:
  void connect(std::uint32_t) override { ++connects; }
  void send(std::uint32_t, std::string_view bytes) override {
    sent += bytes;
    unsent += bytes.size();
  }
  void close(std::uint32_t) override { ++closes; }
  void arm(std::uint32_t, LineTimer timer, std::int64_t delay_ns) override {
    timers.emplace(delay_ns, timer);
  }
  std::size_t unsent_bytes(std::uint32_t) const override { return unsent; }
  std::int64_t ok_delay_ns(std::uint32_t) override {
    if (delays.empty()) {
      return 0;
    }
    const std::int64_t delay = delays.front();
    delays.erase(delays.begin());
    return delay;
  }
  std::uint64_t random(std::uint32_t) override { return draw; }
  bool keep_after(std::uint32_t, LineSurprise what, std::string_view line) override {
    surprises.push_back(what);
    surprise_lines.emplace_back(line);
    return keep;
  }
  void attempt_failed(std::uint32_t, const Error& why, std::optional<std::int64_t> backoff_ns) override {
    failures.push_back(why);
    backoffs.push_back(backoff_ns);
  }
  void settled(std::uint32_t) override { ++settles; }

  // Takes the shortest delay of a `kind` timer armed; fails the test when none is.
  std::int64_t take_timer(LineTimer kind) {
    for (auto it = timers.begin(); it != timers.end(); ++it) {
      if (it->second == kind) {
        const std::int64_t delay = it->first;
        timers.erase(it);
        return delay;
      }
    }
    ADD_FAILURE() << "no timer of kind " << static_cast<int>(kind);
    return 0;
  }
  std::string take_sent() { return std::exchange(sent, std::string()); }

  int connects = 0;
  int closes = 0;
  int settles = 0;
  std::string sent;
  std::size_t unsent = 0;
  std::multimap<std::int64_t, LineTimer> timers;  // by delay
  std::vector<std::int64_t> delays;
  std::uint64_t draw = 0;
  bool keep = true;
  std::vector<LineSurprise> surprises;
  std::vector<std::string> surprise_lines;
  std::vector<Error> failures;
  std::vector<std::optional<std::int64_t>> backoffs;
};

class LineSessionTest : public ::testing::Test {
 protected:
  LineSessionTest() {
    config.ok_timeout_ns = 1000 * kMs;
    config.max_attempts = 3;
    config.backoff = RetryBackoff{100 * kMs, 1000 * kMs};
    config.max_backlog_bytes = 1024;
    config.endpoint = "127.0.0.1:7400";
  }

  // Connected at `now` with `message X` written whole at once.
  void open(std::int64_t now) {
    session.on_connected(now);
    io.unsent = 0;
    session.on_drained(now);
  }
  void hub_says(std::string_view text, std::int64_t now) { session.on_bytes(bytes_of(text), now); }
  // The connection this side closed is gone.
  void close_confirmed() { session.on_closed(LineConnectionEnd{true, false, 0}); }

  LineSessionConfig config;
  FakeIo io;
  LineSession session{config, io, 7, "x1"};
};

TEST_F(LineSessionTest, SendsTheMessageOnConnectAndArmsTheOkTimeout) {
  session.start();
  EXPECT_EQ(io.connects, 1);
  EXPECT_EQ(session.state(), LineSession::State::kConnecting);
  session.on_connected(5 * kMs);
  EXPECT_EQ(io.take_sent(), "message x1\n");
  EXPECT_EQ(io.take_timer(LineTimer::kOkTimeout), 1000 * kMs);
}

TEST_F(LineSessionTest, OwnOkClosesAndSettlesDoneWithTheLatencyFromTheWrite) {
  session.start();
  session.on_connected(0);
  io.unsent = 0;
  session.on_drained(2 * kMs);  // `message X` written whole at 2 ms
  hub_says("ok x1\n", 9 * kMs);
  EXPECT_EQ(io.closes, 1);
  EXPECT_EQ(session.state(), LineSession::State::kClosing);
  close_confirmed();
  EXPECT_EQ(session.state(), LineSession::State::kDone);
  EXPECT_EQ(io.settles, 1);
  EXPECT_EQ(session.latency_ns(), 7 * kMs);
  EXPECT_EQ(session.counts().attempts, 1U);
}

TEST_F(LineSessionTest, AnswersEveryMessageInOrderBeforeItsOwnOk) {
  session.start();
  open(0);
  io.take_sent();
  hub_says("message a\nmessage b\n", kMs);
  EXPECT_EQ(io.take_sent(), "ok a\nok b\n");
  io.unsent = 0;
  session.on_drained(kMs);
  EXPECT_EQ(session.counts().oks_sent, 2U);
  EXPECT_EQ(io.closes, 0);
}

TEST_F(LineSessionTest, DelayedOksGoOutWhenDueInDueOrder) {
  io.delays = {30 * kMs, 10 * kMs};
  session.start();
  open(0);
  io.take_sent();
  hub_says("message slow\nmessage fast\n", 0);
  EXPECT_EQ(io.sent, "");
  session.on_timer(LineTimer::kOkDue, 10 * kMs);
  EXPECT_EQ(io.take_sent(), "ok fast\n");
  session.on_timer(LineTimer::kOkDue, 30 * kMs);
  EXPECT_EQ(io.take_sent(), "ok slow\n");
}

TEST_F(LineSessionTest, OkTimeoutEndsTheAttemptAndRetriesAfterTheBackoff) {
  session.start();
  open(0);
  session.on_timer(LineTimer::kOkTimeout, 1000 * kMs);
  EXPECT_EQ(io.closes, 1);
  close_confirmed();
  ASSERT_EQ(io.failures.size(), 1U);
  EXPECT_TRUE(io.failures[0].is_system(ETIMEDOUT));
  EXPECT_EQ(session.counts().ok_timeouts, 1U);
  EXPECT_EQ(session.counts().connect_timeouts, 0U);
  EXPECT_EQ(session.state(), LineSession::State::kBackoff);
  // draw 0: the lowest wait, half of the full 100 ms.
  EXPECT_EQ(io.take_timer(LineTimer::kRetry), 50 * kMs);
  session.on_timer(LineTimer::kRetry, 1051 * kMs);
  EXPECT_EQ(io.connects, 2);
  EXPECT_EQ(session.counts().attempts, 2U);
  open(1052 * kMs);
  EXPECT_EQ(io.take_sent(), "message x1\nmessage x1\n");  // resent on the new connection
  EXPECT_EQ(session.counts().reconnects, 1U);
}

TEST_F(LineSessionTest, GivesUpAfterMaxAttemptsWithTheLastError) {
  session.start();
  for (unsigned attempt = 1; attempt <= config.max_attempts; ++attempt) {
    session.on_closed(LineConnectionEnd{false, false, ECONNREFUSED});
    if (attempt < config.max_attempts) {
      session.on_timer(LineTimer::kRetry, attempt * kMs);
    }
  }
  EXPECT_EQ(session.state(), LineSession::State::kFailed);
  EXPECT_EQ(io.connects, 3);
  EXPECT_EQ(io.settles, 1);
  ASSERT_NE(session.failure(), nullptr);
  EXPECT_TRUE(session.failure()->is_system(ECONNREFUSED));
  EXPECT_NE(session.failure()->message.find("no ok for 'x1' after 3 attempts"), std::string::npos);
  EXPECT_NE(session.failure()->message.find("cannot reach hub at 127.0.0.1:7400"), std::string::npos);
  EXPECT_FALSE(io.backoffs.back().has_value());
  EXPECT_EQ(session.counts().connect_timeouts, 0U);
}

TEST_F(LineSessionTest, AConnectThatTimesOutIsCountedAsSuch) {
  session.start();
  session.on_closed(LineConnectionEnd{false, false, ETIMEDOUT});
  EXPECT_EQ(session.counts().connect_timeouts, 1U);
  EXPECT_EQ(session.counts().ok_timeouts, 0U);
  EXPECT_NE(io.failures.at(0).message.find("timed out while connecting"), std::string::npos);
}

TEST_F(LineSessionTest, BackoffDoublesUpToItsCap) {
  const RetryBackoff backoff{100 * kMs, 1000 * kMs};
  const std::uint64_t top = ~std::uint64_t{0};  // any draw stays within the cap
  EXPECT_EQ(backoff.before_attempt(2, 0), 50 * kMs);
  EXPECT_EQ(backoff.before_attempt(3, 0), 100 * kMs);
  EXPECT_EQ(backoff.before_attempt(4, 0), 200 * kMs);
  EXPECT_EQ(backoff.before_attempt(6, 0), 500 * kMs);
  EXPECT_EQ(backoff.before_attempt(40, 0), 500 * kMs);
  // The draw spans the whole window, from half to all of the full wait.
  EXPECT_EQ(backoff.before_attempt(3, 100 * kMs), 200 * kMs);
  EXPECT_EQ(backoff.before_attempt(40, 500 * kMs), 1000 * kMs);
  EXPECT_EQ(backoff.before_attempt(40, 500 * kMs + 1), 500 * kMs);
  EXPECT_EQ((RetryBackoff{0, 1000 * kMs}.before_attempt(1'000'000, 7)), 0);  // no wait, and no long loop
  for (unsigned attempt = 2; attempt < 10; ++attempt) {
    EXPECT_LE(backoff.before_attempt(attempt, top), 1000 * kMs);
  }
}

TEST_F(LineSessionTest, ForeignOksAndErrorLinesAreForTheAdapterToJudge) {
  session.start();
  open(0);
  hub_says("ok someone-else\nerror unknown command\n", kMs);
  EXPECT_EQ(io.surprises, (std::vector{LineSurprise::kForeignOk, LineSurprise::kOtherLine}));
  EXPECT_EQ(session.counts().ignored_lines, 2U);
  EXPECT_EQ(io.closes, 0);

  io.keep = false;  // a strict adapter: such a line ends the attempt
  hub_says("error server full\n", 2 * kMs);
  EXPECT_EQ(io.closes, 1);
  close_confirmed();
  ASSERT_EQ(io.failures.size(), 1U);
  EXPECT_NE(io.failures[0].message.find("error server full"), std::string::npos);
  EXPECT_EQ(session.state(), LineSession::State::kBackoff);
}

TEST_F(LineSessionTest, TheHubsLineTooLongEndsTheAttemptWhateverTheAdapterSays) {
  for (const bool keep : {true, false}) {
    FakeIo fresh;
    fresh.keep = keep;
    LineSession s{config, fresh, 1, "x1"};
    s.start();
    s.on_connected(0);
    s.on_bytes(bytes_of("error line too long\n"), kMs);
    EXPECT_EQ(fresh.closes, 1);
    s.on_closed(LineConnectionEnd{true, true, 0});
    ASSERT_EQ(fresh.failures.size(), 1U);
    EXPECT_TRUE(fresh.failures[0].is_system(EMSGSIZE));
    EXPECT_EQ(s.counts().ignored_lines, 0U);
  }
}

TEST_F(LineSessionTest, TheHubsLineTooLongFailsAtOnceWithAttemptsLeft) {
  session.start();
  open(0);
  hub_says("error line too long\n", kMs);
  session.on_closed(LineConnectionEnd{true, true, 0});
  EXPECT_EQ(session.state(), LineSession::State::kFailed);  // not kBackoff: a resend is refused too
  EXPECT_EQ(io.connects, 1);
  EXPECT_EQ(io.settles, 1);
  ASSERT_EQ(io.backoffs.size(), 1U);
  EXPECT_FALSE(io.backoffs[0].has_value());
  ASSERT_NE(session.failure(), nullptr);
  EXPECT_TRUE(session.failure()->is_system(EMSGSIZE));
  EXPECT_NE(session.failure()->message.find("no ok for 'x1': hub closed the connection: error line too long"),
            std::string::npos)
      << session.failure()->message;
}

TEST_F(LineSessionTest, AHubsErrorLineBeforeItsCloseIsTheAttemptsReason) {
  session.start();
  open(0);
  hub_says("error server full\n", kMs);
  EXPECT_EQ(io.closes, 0);  // the adapter keeps going after it; the hub closes
  session.on_closed(LineConnectionEnd{true, true, 0});
  ASSERT_EQ(io.failures.size(), 1U);
  EXPECT_EQ(io.failures[0].message, "hub closed the connection: error server full");
  EXPECT_EQ(session.state(), LineSession::State::kBackoff);  // a full hub may have room later

  // The next connection starts without it: a bare close says only that.
  session.on_timer(LineTimer::kRetry, 200 * kMs);
  open(200 * kMs);
  session.on_closed(LineConnectionEnd{true, true, 0});
  ASSERT_EQ(io.failures.size(), 2U);
  EXPECT_EQ(io.failures[1].message, "hub closed the connection");
}

TEST_F(LineSessionTest, AnOverlongHubLineEndsTheAttempt) {
  config.max_line_bytes = 16;
  session.start();
  open(0);
  hub_says(std::string(40, 'a'), kMs);
  EXPECT_EQ(io.surprises, (std::vector{LineSurprise::kOverlongLine}));
  EXPECT_EQ(session.counts().ignored_lines, 0U);
  EXPECT_EQ(io.closes, 1);
  close_confirmed();
  EXPECT_TRUE(io.failures.at(0).is_system(EPROTO));
}

TEST_F(LineSessionTest, AHubThatDoesNotReadOurOksEndsTheAttemptPastTheBacklogCap) {
  session.start();
  open(0);
  io.unsent = 1000;  // the kernel takes nothing more
  hub_says("message " + std::string(100, 'y') + "\n", kMs);
  EXPECT_EQ(io.closes, 1);
  close_confirmed();
  EXPECT_TRUE(io.failures.at(0).is_system(ENOBUFS));
}

TEST_F(LineSessionTest, OksQueuedBeforeTheOwnOkAreWrittenBeforeTheClose) {
  session.start();
  open(0);
  io.take_sent();
  io.unsent = 0;
  hub_says("message a\nok x1\n", kMs);
  EXPECT_EQ(io.take_sent(), "ok a\n");
  EXPECT_EQ(io.closes, 0);  // `ok a` is not written yet
  io.unsent = 0;
  session.on_drained(2 * kMs);
  EXPECT_EQ(io.closes, 1);
  EXPECT_EQ(session.counts().oks_sent, 1U);
}

TEST_F(LineSessionTest, ARepeatedOwnOkIsReportedAndOtherLinesAfterTheOwnOkAreNot) {
  session.start();
  open(0);
  io.unsent = 0;
  hub_says("message a\nok x1\nok x1\nok z\nerror unknown command\n", kMs);
  EXPECT_EQ(io.surprises, (std::vector{LineSurprise::kDuplicateOk}));
  EXPECT_EQ(io.closes, 0);  // `ok a` is not written yet: the connection is still read
  hub_says("ok x1\nmessage b\n", 2 * kMs);
  EXPECT_EQ(io.surprises.size(), 2U);
  EXPECT_EQ(session.counts().ignored_lines, 0U);
  EXPECT_EQ(io.take_sent(), "message x1\nok a\n");  // `message b` came after the own ok: not answered
}

TEST_F(LineSessionTest, OkTimeoutAfterTheOwnOkClosesWhenAnswersAreStillUnsent) {
  session.start();
  open(0);
  io.unsent = 0;
  hub_says("message a\nok x1\n", kMs);
  EXPECT_EQ(io.closes, 0);
  session.on_timer(LineTimer::kOkTimeout, 1000 * kMs);
  EXPECT_EQ(io.closes, 1);
  close_confirmed();
  EXPECT_EQ(session.state(), LineSession::State::kDone);
  EXPECT_EQ(session.counts().ok_timeouts, 0U);
}

TEST_F(LineSessionTest, TheBackoffGrowsAcrossAttempts) {
  config.max_attempts = 5;
  session.start();
  std::vector<std::int64_t> waits;
  for (int attempt = 1; attempt < 5; ++attempt) {
    session.on_closed(LineConnectionEnd{false, false, ECONNREFUSED});
    waits.push_back(io.take_timer(LineTimer::kRetry));
    session.on_timer(LineTimer::kRetry, 0);
  }
  EXPECT_EQ(waits, (std::vector<std::int64_t>{50 * kMs, 100 * kMs, 200 * kMs, 400 * kMs}));
}

TEST_F(LineSessionTest, ARetryTimerAfterGivingUpDoesNothing) {
  session.start();
  session.on_closed(LineConnectionEnd{false, false, ECONNREFUSED});
  ASSERT_EQ(session.state(), LineSession::State::kBackoff);
  session.give_up(make_error("cancelled"));
  session.on_timer(LineTimer::kRetry, kMs);
  EXPECT_EQ(io.connects, 1);
  EXPECT_EQ(session.state(), LineSession::State::kFailed);
}

TEST_F(LineSessionTest, GivingUpSettlesOnceAndIgnoresTheLaterClose) {
  session.start();
  open(0);
  session.give_up(make_error("cancelled"));
  EXPECT_EQ(session.state(), LineSession::State::kFailed);
  close_confirmed();
  EXPECT_EQ(io.settles, 1);
  EXPECT_TRUE(io.failures.empty());
  EXPECT_EQ(session.failure()->message, "cancelled");
}

TEST_F(LineSessionTest, ATimerOfAnEarlierStateDoesNothing) {
  session.start();
  session.on_timer(LineTimer::kRetry, kMs);      // not in backoff
  session.on_timer(LineTimer::kOkTimeout, kMs);  // not open
  EXPECT_EQ(io.connects, 1);
  EXPECT_EQ(io.closes, 0);
}

}  // namespace
}  // namespace ringhub
