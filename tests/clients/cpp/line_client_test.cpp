// Tests for clients/cpp/line_client against a fake LINE hub: a blocking socket on 127.0.0.1 port 0 whose
// scripted lines run in a thread. Ordering comes from the lines exchanged, never from sleeps; every
// socket read in the fake is bounded, so a broken client fails a test instead of hanging it.
#include "clients/cpp/line_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/line_protocol.hpp"
#include "tests/clients/cpp/fake_hub_socket.hpp"

namespace ringhub::client {
namespace {

using client::fake_hub::bind_loopback;
using client::fake_hub::FakeHubTest;
std::string read_exact(int fd, std::size_t n) {
  return client::fake_hub::read_exact<std::string>(fd, n);
}
std::string read_until_eof(int fd) {
  return client::fake_hub::read_until_eof<std::string>(fd);
}
void write_all(int fd, std::string_view bytes) {
  client::fake_hub::write_all(fd, bytes);
}

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long the fake waits for any one read: far past what a passing test needs, short of ctest's limit.
constexpr auto kFakeReadLimit = 10s;

// One line without its "\n", read a byte at a time so nothing after it is consumed; nullopt on EOF.
std::optional<std::string> read_line(int fd) {
  std::string line;
  for (std::string c = read_exact(fd, 1); !c.empty(); c = read_exact(fd, 1)) {
    if (c[0] == '\n') {
      return line;
    }
    line += c;
  }
  return std::nullopt;
}

// A fake hub: the script accepts the connections it expects and plays its part on each. What the
// script saw is read after join_hub(), which orders it.
class LineClientTest : public FakeHubTest {
 protected:
  void serve(std::function<void()> script) { hub_ = std::thread(std::move(script)); }

  // The next connection, its reads bounded by kFakeReadLimit; -1 once the listener is shut down.
  int accept_client() {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      const timeval limit{std::chrono::duration_cast<std::chrono::seconds>(kFakeReadLimit).count(), 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      accepted_.push_back(fd);
    }
    return fd;
  }

  // Closes a connection the script is done with (accepted ones are closed at the end otherwise).
  void hang_up(int fd) {
    std::erase(accepted_, fd);
    ::close(fd);
  }

  LineClientOptions options(std::string message) const {
    LineClientOptions o;
    o.host = "127.0.0.1";
    o.port = port_;
    o.message = std::move(message);
    o.backoff_initial = 1ms;  // retries are tested for happening, not for their pacing
    o.backoff_max = 4ms;
    return o;
  }

  ~LineClientTest() override {
    for (const int fd : accepted_) {
      ::close(fd);
    }
  }

  std::vector<int> accepted_;       // owned by the script's thread until join_hub()
  std::vector<std::string> lines_;  // what the script read, for checks after join_hub()
};

// (1) The hub forwards our own message back to us: we answer it, and the ok it routes back ends the run.
TEST_F(LineClientTest, OwnMessageForwardedBackIsAnsweredAndItsOkEndsTheRun) {
  serve([this] {
    const int fd = accept_client();
    lines_.push_back(read_line(fd).value_or("<eof>"));
    write_all(fd, "message hello world\n");
    lines_.push_back(read_line(fd).value_or("<eof>"));
    write_all(fd, "ok hello world\n");
    lines_.push_back(read_until_eof(fd));
  });
  Result<LineOutcome> outcome = run_line_client(options("hello world"));
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome->attempts, 1U);
  EXPECT_EQ(outcome->reconnects, 0U);
  EXPECT_EQ(outcome->timeouts, 0U);
  EXPECT_EQ(outcome->oks_sent, 1U);
  EXPECT_EQ(outcome->ignored_lines, 0U);
  EXPECT_GT(outcome->latency, 0ns);
  EXPECT_EQ(lines_, (std::vector<std::string>{"message hello world", "ok hello world", ""}))
      << "the client sends its message, answers it, then closes without another byte";
}

// (2) Other clients' messages are answered while we wait for our own ok, exactly and in arrival order.
TEST_F(LineClientTest, OtherClientsMessagesAreAnsweredInArrivalOrder) {
  std::string answers;
  serve([this, &answers] {
    const int fd = accept_client();
    lines_.push_back(read_line(fd).value_or("<eof>"));
    write_all(fd, "message Y\nmessage second one\n");
    answers = read_exact(fd, std::string_view("ok Y\nok second one\n").size());
    write_all(fd, "ok mine\n");
    read_until_eof(fd);
  });
  Result<LineOutcome> outcome = run_line_client(options("mine"));
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(lines_, (std::vector<std::string>{"message mine"}));
  EXPECT_EQ(answers, "ok Y\nok second one\n");
  EXPECT_EQ(outcome->oks_sent, 2U);
  EXPECT_EQ(outcome->attempts, 1U);
}

// (3) ok_delay holds each answer back at least that long after its message was sent to us.
TEST_F(LineClientTest, OkDelayIsHonoured) {
  constexpr auto kDelay = 150ms;
  Clock::duration waited{};
  std::string answer;
  serve([&] {
    const int fd = accept_client();
    read_line(fd);
    const Clock::time_point sent = Clock::now();
    write_all(fd, "message Y\n");
    answer = read_line(fd).value_or("<eof>");
    waited = Clock::now() - sent;
    write_all(fd, "ok late\n");
    read_until_eof(fd);
  });
  LineClientOptions o = options("late");
  o.ok_delay = kDelay;
  Result<LineOutcome> outcome = run_line_client(o);
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(answer, "ok Y");
  EXPECT_GE(waited, kDelay);
  EXPECT_LT(waited, kDelay + 5s) << "generous: only a client that never answers on time fails this";
  EXPECT_EQ(outcome->oks_sent, 1U);
}

// (4) A hub that hangs up before answering (as on a restart) gets the message again on a new connection.
TEST_F(LineClientTest, LostConnectionIsRetriedWithTheMessageAgain) {
  serve([this] {
    const int first = accept_client();
    lines_.push_back(read_line(first).value_or("<eof>"));
    hang_up(first);
    const int second = accept_client();
    lines_.push_back(read_line(second).value_or("<eof>"));
    write_all(second, "ok again\n");
    read_until_eof(second);
  });
  std::vector<Error> retries;
  LineClientOptions o = options("again");
  o.on_retry = [&retries](const LineRetry& r) { retries.push_back(r.why); };
  Result<LineOutcome> outcome = run_line_client(o);
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome->attempts, 2U);
  EXPECT_EQ(outcome->reconnects, 1U);
  EXPECT_EQ(outcome->timeouts, 0U);
  EXPECT_EQ(lines_, (std::vector<std::string>{"message again", "message again"}));
  ASSERT_EQ(retries.size(), 1U);
  EXPECT_EQ(retries[0].message, "hub closed the connection");
}

// (5) A hub that never answers costs one timeout per attempt, then a clear error.
TEST_F(LineClientTest, SilentHubExhaustsTheAttemptsWithATimeoutError) {
  serve([this] {
    for (int i = 0; i < 3; ++i) {
      const int fd = accept_client();
      lines_.push_back(read_line(fd).value_or("<eof>"));
      read_until_eof(fd);  // the client gives up on this connection by closing it
      hang_up(fd);
    }
  });
  unsigned retries = 0;
  LineClientOptions o = options("anyone?");
  o.timeout = 200ms;
  o.max_attempts = 3;
  o.on_retry = [&retries](const LineRetry& r) {
    ++retries;
    EXPECT_TRUE(r.why.is_system(ETIMEDOUT)) << r.why.message;
  };
  const Clock::time_point start = Clock::now();
  Result<LineOutcome> outcome = run_line_client(o);
  const Clock::duration took = Clock::now() - start;
  join_hub();
  ASSERT_FALSE(outcome);
  EXPECT_TRUE(outcome.error().is_system(ETIMEDOUT)) << outcome.error().message;
  EXPECT_EQ(outcome.error().message, "no ok for 'anyone?' after 3 attempts: last error: no ok within 200 ms");
  EXPECT_EQ(retries, 2U);
  EXPECT_EQ(lines_, std::vector<std::string>(3, "message anyone?"));
  EXPECT_GE(took, 3 * 200ms);
}

// (6a) Nobody listening: every attempt is refused, and the error says where and why.
TEST(LineClientRefused, RefusedPortGivesAClearErrorAfterEveryAttempt) {
  const auto [fd, port] = bind_loopback(false);
  ASSERT_GE(fd, 0);
  LineClientOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.message = "x";
  o.max_attempts = 2;
  o.backoff_initial = 1ms;
  Result<LineOutcome> outcome = run_line_client(o);
  ::close(fd);
  ASSERT_FALSE(outcome);
  EXPECT_TRUE(outcome.error().is_system(ECONNREFUSED)) << outcome.error().message;
  EXPECT_EQ(outcome.error().message,
            "no ok for 'x' after 2 attempts: last error: cannot reach hub at 127.0.0.1:" +
                std::to_string(port) + ": Connection refused");
}

// (6b) The hub comes up between attempts (bound but not listening until the first refusal is seen).
TEST_F(LineClientTest, HubThatStartsListeningLateIsReachedOnTheNextAttempt) {
  ::close(listen_fd_);
  std::tie(listen_fd_, port_) = bind_loopback(false);
  ASSERT_GE(listen_fd_, 0);
  std::vector<Error> refusals;
  LineClientOptions o = options("late hub");
  o.on_retry = [&](const LineRetry& r) {
    refusals.push_back(r.why);
    if (refusals.size() == 1 && ::listen(listen_fd_, 4) == 0) {
      serve([this] {
        const int fd = accept_client();
        lines_.push_back(read_line(fd).value_or("<eof>"));
        write_all(fd, "ok late hub\n");
        read_until_eof(fd);
      });
    }
  };
  Result<LineOutcome> outcome = run_line_client(o);
  ASSERT_TRUE(hub_.joinable()) << "listen() failed or the first attempt was not refused";
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  ASSERT_EQ(refusals.size(), 1U);
  EXPECT_TRUE(refusals[0].is_system(ECONNREFUSED)) << refusals[0].message;
  EXPECT_EQ(outcome->attempts, 2U);
  EXPECT_EQ(outcome->reconnects, 0U) << "no connection was ever lost";
  EXPECT_EQ(lines_, std::vector<std::string>{"message late hub"});
}

// (7) A hub (or an nc user in front of one) may end lines with CRLF.
TEST_F(LineClientTest, CrlfLinesAreUnderstood) {
  std::string answer;
  serve([this, &answer] {
    const int fd = accept_client();
    read_line(fd);
    write_all(fd, "message crlf\r\n");
    answer = read_line(fd).value_or("<eof>");
    write_all(fd, "ok crlf\r\n");
    read_until_eof(fd);
  });
  Result<LineOutcome> outcome = run_line_client(options("crlf"));
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(answer, "ok crlf") << "the \"\\r\" is not part of X";
  EXPECT_EQ(outcome->attempts, 1U);
}

// (8) An ok for someone else's X neither ends the run nor the connection; a message after it is answered.
TEST_F(LineClientTest, SomeoneElsesOkIsIgnored) {
  std::string answer;
  serve([this, &answer] {
    const int fd = accept_client();
    read_line(fd);
    write_all(fd, "ok mine too\nok min\nmessage probe\n");
    answer = read_line(fd).value_or("<eof>");
    write_all(fd, "ok mine\n");
    read_until_eof(fd);
  });
  Result<LineOutcome> outcome = run_line_client(options("mine"));
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(answer, "ok probe");
  EXPECT_EQ(outcome->ignored_lines, 2U);
  EXPECT_EQ(outcome->attempts, 1U);
}

// The hub keeps the connection after `error unknown command`, and so does the client; junk lines too.
TEST_F(LineClientTest, UnknownCommandErrorAndJunkLinesAreIgnored) {
  std::string answer;
  serve([this, &answer] {
    const int fd = accept_client();
    read_line(fd);
    write_all(fd, std::string(kUnknownCommandLine) + "\nhello?\nmessage probe\n");
    answer = read_line(fd).value_or("<eof>");
    write_all(fd, "ok x\n");
    read_until_eof(fd);
  });
  Result<LineOutcome> outcome = run_line_client(options("x"));
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(answer, "ok probe");
  EXPECT_EQ(outcome->ignored_lines, 3U);
  EXPECT_EQ(outcome->attempts, 1U);
}

// `error line too long` means the hub is closing: the client does not wait for the close to reconnect.
// The hub's lines are shorter than X needs: a resend would be refused the same way, so the client
// fails after that one attempt, with attempts left.
TEST_F(LineClientTest, LineTooLongErrorEndsTheConnectionAndTheRun) {
  serve([this] {
    const int first = accept_client();
    read_line(first);
    write_all(first, kLineTooLongLine);
    lines_.push_back(read_until_eof(first));  // the client closes; the fake never does
  });
  std::vector<Error> retries;
  LineClientOptions o = options("x");
  o.on_retry = [&retries](const LineRetry& r) { retries.push_back(r.why); };
  Result<LineOutcome> outcome = run_line_client(o);
  join_hub();
  ASSERT_FALSE(outcome);
  EXPECT_TRUE(outcome.error().is_system(EMSGSIZE));
  EXPECT_EQ(
      outcome.error().message,
      "no ok for 'x': hub closed the connection: error line too long (the hub's lines are shorter than X "
      "needs: a resend would be refused too)");
  EXPECT_TRUE(retries.empty());
}

// The hub's error line before its close is the attempt's reason.
TEST_F(LineClientTest, TheHubsErrorLineBeforeItsCloseIsTheReason) {
  serve([this] {
    const int first = accept_client();
    read_line(first);
    write_all(first, kServerFullLine);
    hang_up(first);
    const int second = accept_client();
    read_line(second);
    write_all(second, "ok x\n");
    read_until_eof(second);
  });
  std::vector<Error> retries;
  LineClientOptions o = options("x");
  o.on_retry = [&retries](const LineRetry& r) { retries.push_back(r.why); };
  Result<LineOutcome> outcome = run_line_client(o);
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome->attempts, 2U);
  ASSERT_EQ(retries.size(), 1U);
  EXPECT_EQ(retries[0].message, "hub closed the connection: error server full");
}

// A line past the limit is a broken hub: drop the connection instead of buffering it.
TEST_F(LineClientTest, OverlongLineFromTheHubEndsTheConnection) {
  serve([this] {
    const int first = accept_client();
    read_line(first);
    write_all(first, "message " + std::string(kDefaultMaxLineBytes, 'a') + "\n");
    read_until_eof(first);
    const int second = accept_client();
    read_line(second);
    write_all(second, "ok x\n");
    read_until_eof(second);
  });
  std::vector<Error> retries;
  LineClientOptions o = options("x");
  o.on_retry = [&retries](const LineRetry& r) { retries.push_back(r.why); };
  Result<LineOutcome> outcome = run_line_client(o);
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome->attempts, 2U);
  EXPECT_EQ(outcome->oks_sent, 0U);
  ASSERT_EQ(retries.size(), 1U);
  EXPECT_TRUE(retries[0].is_system(EPROTO)) << retries[0].message;
}

// A line of exactly the limit is still a line: "message " plus X makes it, and it is answered.
TEST_F(LineClientTest, LineOfExactlyTheLimitIsAccepted) {
  const std::string x(kDefaultMaxLineBytes - kMessagePrefix.size(), 'b');
  std::string answer;
  serve([&] {
    const int fd = accept_client();
    read_line(fd);
    write_all(fd, "message " + x + "\r\n");
    answer = read_exact(fd, kOkPrefix.size() + x.size() + 1);
    write_all(fd, "ok x\n");
    read_until_eof(fd);
  });
  Result<LineOutcome> outcome = run_line_client(options("x"));
  join_hub();
  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(answer, "ok " + x + "\n");
  EXPECT_EQ(outcome->attempts, 1U);
}

TEST(LineClientValidation, BadMessagesAndOptionsAreRejectedBeforeConnecting) {
  LineClientOptions o;
  o.host = "127.0.0.1";
  o.port = 9;  // never reached: validation comes first
  const auto rejected = [&o](std::string message) {
    o.message = std::move(message);
    Result<LineOutcome> outcome = run_line_client(o);
    return !outcome && outcome.error().is_system(EINVAL);
  };
  EXPECT_TRUE(rejected(""));
  EXPECT_TRUE(rejected("two\nlines"));
  EXPECT_TRUE(rejected("trailing\r"));
  EXPECT_TRUE(rejected(std::string(kDefaultMaxLineBytes - kMessagePrefix.size() + 1, 'x')));
  o.max_attempts = 0;
  EXPECT_TRUE(rejected("fine"));
  o.max_attempts = 1;
  o.timeout = 0ms;
  EXPECT_TRUE(rejected("fine"));

  o.timeout = 1s;
  o.message = "a\nb";
  Result<LineOutcome> outcome = run_line_client(o);
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().message, "the message contains a newline, which would end its line early");
}

// The cancel flag ends a wait that nothing else would end soon (a 60 s timeout).
TEST_F(LineClientTest, CancelEndsTheWait) {
  std::atomic<bool> cancel{false};
  serve([this, &cancel] {
    const int fd = accept_client();
    read_line(fd);
    cancel = true;
    read_until_eof(fd);
  });
  LineClientOptions o = options("x");
  o.timeout = 60s;
  Result<LineOutcome> outcome = run_line_client(o, &cancel);
  join_hub();
  ASSERT_FALSE(outcome);
  EXPECT_TRUE(outcome.error().is_system(ECANCELED)) << outcome.error().message;
  EXPECT_EQ(outcome.error().message, "cancelled before 'x' was answered (1 attempt made)");
}

}  // namespace
}  // namespace ringhub::client
