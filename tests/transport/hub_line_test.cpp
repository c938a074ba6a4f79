// Line protocol through real sockets, on 1 and 3 shards: random forwarding (uniform, sender included),
// oks to the oldest sender, CRLF, unknown verbs, line and pending limits, departures and re-forwarding,
// the self-healing client across a hub restart, stop with messages pending, no state left after churn.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "clients/cpp/line_client.hpp"
#include "core/line_protocol.hpp"
#include "core/memory_account.hpp"
#include "tests/transport/hub_fixture.hpp"
#include "transport/read_policy.hpp"

namespace ringhub::testing {
namespace {

// prefix + decimal i. (Not "p" + std::to_string(i): g++ 12 -O2 warns a false -Wrestrict on it.)
std::string numbered(std::string_view prefix, std::size_t i) {
  std::string out(prefix);
  out += std::to_string(i);
  return out;
}

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// How long any wait for the hub may take before the test calls it a failure: a bound, not a delay.
constexpr Ms kWait = 10s;

// Tries at sending a message until the hub's random pick lands it on one given connection out of two:
// each try is a coin flip, so 64 misses in a row (p = 2^-64) mean the pick is broken.
constexpr int kLandingTries = 64;

// A line the hub writes, without its "\n".
std::string bare(std::string_view line) {
  return std::string(line.substr(0, line.size() - 1));
}

std::string message_line(std::string_view x) {
  return std::string(kMessagePrefix) + std::string(x);
}
std::string ok_line(std::string_view x) {
  return std::string(kOkPrefix) + std::string(x);
}

// One TCP connection to the hub's line port, blocking, read line by line with every wait bounded by
// poll(). Lines come back without their "\n" but with any "\r", so a test sees exactly what the hub sent.
class LineSocket {
 public:
  LineSocket() = default;  // not connected: a connected one is moved in later
  explicit LineSocket(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      ADD_FAILURE() << "socket: " << std::strerror(errno);
      return;
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      ADD_FAILURE() << "connect to line port " << port << ": " << std::strerror(errno);
      close();
      return;
    }
    const int on = 1;  // lines are small and often written a few bytes at a time on purpose
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  }
  LineSocket(LineSocket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), in_(std::move(other.in_)), eof_(other.eof_) {}
  LineSocket& operator=(LineSocket&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
      in_ = std::move(other.in_);
      eof_ = other.eof_;
    }
    return *this;
  }
  LineSocket(const LineSocket&) = delete;
  LineSocket& operator=(const LineSocket&) = delete;
  ~LineSocket() { close(); }

  int fd() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  bool eof() const { return eof_; }  // the hub closed its side (or reset the connection)

  void close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  // Writes every byte, blocking. False on any error.
  bool write(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) {
        continue;
      }
      if (sent <= 0) {
        ADD_FAILURE() << "send: " << std::strerror(errno);
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(sent));
    }
    return true;
  }
  bool send_line(std::string_view line) { return write(std::string(line) + "\n"); }

  // One recv() of whatever has arrived; call it when poll() says readable. False at EOF or error.
  bool receive_some() {
    char chunk[64 * 1024];
    ssize_t got = 0;
    do {
      got = ::recv(fd_, chunk, sizeof chunk, 0);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
      eof_ = true;  // 0 is EOF; an error (a reset) ends the stream just the same for these tests
      return false;
    }
    in_.append(chunk, static_cast<std::size_t>(got));
    return true;
  }

  // A complete line already received, if any.
  std::optional<std::string> buffered_line() {
    const std::size_t newline = in_.find('\n');
    if (newline == std::string::npos) {
      return std::nullopt;
    }
    std::string line = in_.substr(0, newline);
    in_.erase(0, newline + 1);
    return line;
  }

  // The next line; nullopt if none comes within `limit` or the stream ends first (see eof()).
  std::optional<std::string> read_line(Ms limit = kWait) {
    const Clock::time_point until = Clock::now() + limit;
    for (;;) {
      if (std::optional<std::string> line = buffered_line()) {
        return line;
      }
      if (eof_ || fd_ < 0) {
        return std::nullopt;
      }
      const Ms left = std::max(std::chrono::ceil<Ms>(until - Clock::now()), Ms{0});
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready > 0) {
        receive_some();
      } else if (ready < 0 && errno == EINTR) {
        continue;
      } else if (ready < 0 || Clock::now() >= until) {
        return std::nullopt;
      }
    }
  }

  // The next line, passing over any equal to `skip`.
  std::optional<std::string> read_line_except(std::string_view skip, Ms limit = kWait) {
    const Clock::time_point until = Clock::now() + limit;
    for (;;) {
      const Ms left = std::max(std::chrono::ceil<Ms>(until - Clock::now()), Ms{0});
      std::optional<std::string> line = read_line(left);
      if (!line || *line != skip) {
        return line;
      }
    }
  }

  // Reads until the hub ends the stream; true if it did within `limit`. Lines read on the way are
  // appended to `lines` when given.
  bool read_until_eof(Ms limit = kWait, std::vector<std::string>* lines = nullptr) {
    const Clock::time_point until = Clock::now() + limit;
    while (!eof_) {
      const Ms left = std::max(std::chrono::ceil<Ms>(until - Clock::now()), Ms{0});
      std::optional<std::string> line = read_line(left);
      if (!line && !eof_) {
        return false;
      }
      if (line && lines != nullptr) {
        lines->push_back(*line);
      }
    }
    return true;
  }

 private:
  int fd_ = -1;
  std::string in_;  // received bytes not yet returned as lines
  bool eof_ = false;
};

struct LineFrom {
  std::size_t index = 0;  // which socket
  std::string line;
};

// The first complete line any of `sockets` receives within `limit`; sockets at EOF are passed over.
std::optional<LineFrom> read_line_from_any(const std::vector<LineSocket*>& sockets, Ms limit = kWait) {
  const Clock::time_point until = Clock::now() + limit;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      if (std::optional<std::string> line = sockets[i]->buffered_line()) {
        return LineFrom{i, std::move(*line)};
      }
      if (!sockets[i]->eof() && sockets[i]->open()) {
        fds.push_back(pollfd{sockets[i]->fd(), POLLIN, 0});
        which.push_back(i);
      }
    }
    const Ms left = std::max(std::chrono::ceil<Ms>(until - Clock::now()), Ms{0});
    if (fds.empty() || left == Ms{0}) {
      return std::nullopt;
    }
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return std::nullopt;
    }
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents != 0) {
        sockets[which[k]]->receive_some();
      }
    }
  }
}

// Line connections that answer every `message Y` with `ok Y`, served by a thread of their own until
// destroyed. The thread owns the sockets from construction on.
class Responders {
 public:
  Responders(std::uint16_t port, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      sockets_.emplace_back(port);
    }
    thread_ = std::thread([this] { serve(); });
  }
  Responders(const Responders&) = delete;
  Responders& operator=(const Responders&) = delete;
  ~Responders() {
    stop_.store(true);
    thread_.join();
  }

  std::uint64_t answered() const { return answered_.load(); }

 private:
  void serve() {
    std::vector<pollfd> fds;
    for (const LineSocket& s : sockets_) {
      fds.push_back(pollfd{s.fd(), POLLIN, 0});
    }
    while (!stop_.load()) {
      // The timeout only bounds how late the stop flag is seen.
      if (::poll(fds.data(), fds.size(), 20) <= 0) {
        continue;
      }
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents == 0) {
          continue;
        }
        if (!sockets_[i].receive_some()) {
          fds[i].fd = -1;  // the hub went away: poll() passes over negative descriptors
          continue;
        }
        while (std::optional<std::string> line = sockets_[i].buffered_line()) {
          const LineCommand command = parse_line(*line);
          if (command.verb == LineCommand::Verb::kMessage &&
              sockets_[i].send_line(ok_line(command.payload))) {
            answered_.fetch_add(1);
          }
        }
      }
    }
  }

  std::vector<LineSocket> sockets_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> answered_{0};
  std::thread thread_;
};

class LineFixture : public HubTest {
 protected:
  LineSocket connect_line() { return LineSocket(hub_->line_port()); }

  // Waits until a hub counter (a gauge or a running total) shows `want`.
  ::testing::AssertionResult stat_becomes(const char* name, std::uint64_t HubStats::*field,
                                          std::uint64_t want) {
    if (eventually([&] { return stats().*field == want; })) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << name << " is " << stats().*field << ", expected " << want;
  }
  ::testing::AssertionResult line_connections_become(std::uint64_t n) {
    return stat_becomes("line_connections", &HubStats::line_connections, n);
  }

  // `origin` sends `message <prefix><i>` for i = 0, 1, ... until one is forwarded to `other` (of two line
  // connections in all) and returns that X, or "" after kLandingTries. Messages forwarded back to
  // `origin` itself are answered and their oks read, so only the returned X is left pending.
  // *forwarded_to_origin counts those.
  std::string land_on_other(LineSocket& origin, LineSocket& other, std::string_view prefix,
                            int* forwarded_to_origin) {
    *forwarded_to_origin = 0;
    const std::vector<LineSocket*> both{&origin, &other};
    for (int i = 0; i < kLandingTries; ++i) {
      std::string x = std::string(prefix) + std::to_string(i);  // not const: returned by move
      if (!origin.send_line(message_line(x))) {
        return {};
      }
      std::optional<LineFrom> got = read_line_from_any(both);
      if (!got || got->line != message_line(x)) {
        ADD_FAILURE() << "expected '" << message_line(x) << "' on either connection, got "
                      << (got ? "'" + got->line + "'" : std::string("nothing"));
        return {};
      }
      if (got->index == 1) {
        return x;
      }
      ++*forwarded_to_origin;
      origin.send_line(ok_line(x));
      std::optional<std::string> ok = origin.read_line();
      if (ok != ok_line(x)) {
        ADD_FAILURE() << "expected '" << ok_line(x) << "', got " << ok.value_or("nothing");
        return {};
      }
    }
    ADD_FAILURE() << kLandingTries << " messages in a row were all forwarded back to their sender";
    return {};
  }
};

// Parameter: the shard count.
class HubLineTest : public LineFixture, public ::testing::WithParamInterface<unsigned> {
 protected:
  HubConfig config() const { return test_config(GetParam()); }

  // The hub holds back what a line client sends past its pending allowance only while its memory is past
  // half the budget, and stops reading a client that holds messages back from 3/4 of it. This hub has a
  // small budget, and a silent client alone on it first sends itself enough messages to hold 3/4 of it
  // (forwarded back to their sender, they are not held against its allowance). Then a pipeliner with a
  // `allowance`-byte allowance writes 3,000 messages past it; the silent client gets those forwarded to
  // it and never answers: they are held against the pipeliner.
  static constexpr std::size_t kSmallBudget = std::size_t{8} << 20;
  static constexpr std::size_t kFillMessages = 26'000;  // about 6.8 MB of pending cost: past 3/4 of it
  static constexpr std::size_t kPipelined = 3'000;
  struct Pipelined {
    LineSocket silent;
    LineSocket pipeliner;
  };
  Pipelined start_pipelining(std::size_t allowance) {
    HubConfig c = config();
    c.max_line_pending_bytes = allowance;
    c.max_memory = kSmallBudget;
    c.recv_buffer_size = 4096;  // a read past half the budget adds little
    c.recv_buffer_count = 64;   // a quarter of the budget holds twice every shard's pool
    c.write_deadline = 60s;     // the pipeliner never reads: not what these tests are about
    start_hub(c);
    Pipelined run{.silent = connect_line(), .pipeliner = LineSocket()};
    EXPECT_TRUE(line_connections_become(1));
    std::string burst;
    for (std::size_t i = 0; i < kFillMessages; ++i) {
      burst += message_line(numbered("f", i)) + "\n";
    }
    EXPECT_TRUE(run.silent.write(burst));
    while (run.silent.read_line(Ms{500})) {  // its own messages, forwarded back
    }
    EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, kFillMessages));
    EXPECT_GE(stats().memory_in_use, kSmallBudget / MemoryBudget::kReserveDivisor * 3);
    // The pipeliner connects once lines are throttled: its first recv is then shaped by its allowance.
    run.pipeliner = connect_line();
    EXPECT_TRUE(line_connections_become(2));
    burst.clear();
    for (std::size_t i = 0; i < kPipelined; ++i) {
      burst += message_line(numbered("p", i)) + "\n";
    }
    EXPECT_TRUE(run.pipeliner.write(burst));
    return run;
  }
  // The pipeliner's messages that reach the silent client until the hub is quiet (their X).
  static std::vector<std::string> held_by_silent(Pipelined& run) {
    std::vector<std::string> held;
    while (std::optional<std::string> line = run.silent.read_line(Ms{500})) {
      if (line->starts_with(message_line("p"))) {
        held.push_back(line->substr(kMessagePrefix.size()));
      }
    }
    return held;
  }
  void start() { start_hub(config()); }

  // Four clients each write 8,000 messages (about 1.6 MB of pending cost against a 1 MiB allowance)
  // before answering anything, then answer every message they get on the same connection; every
  // message must be answered once. Returns the most messages seen held back.
  std::uint64_t run_pipelines_that_answer() {
    constexpr std::size_t kClients = 4;
    constexpr std::size_t kMessages = 8'000;
    std::vector<LineSocket> clients;
    std::vector<LineSocket*> readers;
    clients.reserve(kClients);
    readers.reserve(kClients);
    for (std::size_t i = 0; i < kClients; ++i) {
      clients.push_back(connect_line());
    }
    for (LineSocket& client : clients) {
      readers.push_back(&client);
    }
    EXPECT_TRUE(line_connections_become(kClients));
    const timeval send_limit{30, 0};  // a hub that stopped reading fails the test instead of hanging it
    for (std::size_t i = 0; i < kClients; ++i) {
      EXPECT_EQ(::setsockopt(clients[i].fd(), SOL_SOCKET, SO_SNDTIMEO, &send_limit, sizeof send_limit), 0);
      std::string burst;
      for (std::size_t k = 0; k < kMessages; ++k) {
        burst += message_line(numbered(numbered("c", i) + "-", k)) + "\n";
      }
      EXPECT_TRUE(clients[i].write(burst)) << "the hub stopped reading client " << i;
    }
    std::uint64_t held_peak = stats().line_held_back;
    std::set<std::string> oks;
    for (std::size_t lines = 0; oks.size() < kClients * kMessages; ++lines) {
      if (lines % 1000 == 0) {
        held_peak = std::max(held_peak, stats().line_held_back);
      }
      std::optional<LineFrom> got = read_line_from_any(readers);
      if (!got.has_value()) {
        ADD_FAILURE() << "stalled with " << oks.size() << " oks; " << stats().line_pending
                      << " messages pending, " << stats().line_held_back << " held back";
        return held_peak;
      }
      if (got->line.starts_with("ok ")) {
        EXPECT_TRUE(oks.insert(got->line).second) << "duplicate " << got->line;
      } else {
        EXPECT_TRUE(got->line.starts_with(kMessagePrefix)) << got->line;
        EXPECT_TRUE(clients[got->index].send_line(ok_line(got->line.substr(kMessagePrefix.size()))));
      }
    }
    EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
    EXPECT_TRUE(stat_becomes("line_held_back", &HubStats::line_held_back, 0));
    EXPECT_EQ(stats().line_protocol_errors, 0U);
    return held_peak;
  }
};

INSTANTIATE_TEST_SUITE_P(Shards, HubLineTest, ::testing::Values(1U, 3U),
                         [](const ::testing::TestParamInfo<unsigned>& info) {
                           return info.param == 1 ? std::string("OneShard") : std::string("ThreeShards");
                         });

TEST_P(HubLineTest, MessageToTheOnlyConnectionComesBackAndItsOkReturns) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  ASSERT_TRUE(solo.send_line("message hello world"));
  EXPECT_EQ(solo.read_line(), "message hello world");  // X may hold spaces
  ASSERT_TRUE(solo.send_line("ok hello world"));
  EXPECT_EQ(solo.read_line(), "ok hello world");

  EXPECT_TRUE(stat_becomes("line_messages_in", &HubStats::line_messages_in, 1));
  EXPECT_TRUE(stat_becomes("line_forwards", &HubStats::line_forwards, 1));
  EXPECT_TRUE(stat_becomes("line_oks_delivered", &HubStats::line_oks_delivered, 1));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
  // Lines count as frames both ways: two read (message, ok), two written (the forward, the ok).
  EXPECT_TRUE(stat_becomes("frames_in", &HubStats::frames_in, 2));
  EXPECT_TRUE(stat_becomes("frames_out", &HubStats::frames_out, 2));
  EXPECT_TRUE(line_connections_become(1));
  const HubStats s = stats();
  EXPECT_EQ(s.line_reforwards, 0U);
  EXPECT_EQ(s.line_unmatched_oks, 0U);
  EXPECT_EQ(s.line_protocol_errors, 0U);
  EXPECT_EQ(s.connections, 0U);  // line connections are not counted as relay connections

  solo.close();
  EXPECT_TRUE(line_connections_become(0));
}

// A lone client that sends `message X` and half-closes at once (`echo "message X" | nc -N`) is still a
// live connection: the message is forwarded to it, the only one, before the hub closes. The EOF comes
// in the same read as the message most rounds, so this is the race where the message was lost.
TEST_P(HubLineTest, HalfClosedLoneSenderStillGetsItsOwnMessage) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int round = 0; round < 20; ++round) {
    LineSocket solo = connect_line();
    const std::string x = numbered("solo", static_cast<std::size_t>(round));
    ASSERT_TRUE(solo.write(message_line(x) + "\n"));
    ASSERT_EQ(::shutdown(solo.fd(), SHUT_WR), 0) << std::strerror(errno);
    std::vector<std::string> lines;
    ASSERT_TRUE(solo.read_until_eof(kWait, &lines)) << "round " << round;
    EXPECT_EQ(lines, std::vector<std::string>{message_line(x)}) << "round " << round;
  }
  EXPECT_TRUE(stat_becomes("line_forwards", &HubStats::line_forwards, 20));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
}

// A sender that half-closes right after `message X` counts as gone for what it sent (its pending
// messages are dropped, as at a disconnect, so a client that reconnects and resends is not robbed of
// its ok by its old connection), but its message is not lost: it reaches a connection live when it
// was routed, the other one or (its EOF not handled yet) the sender itself.
TEST_P(HubLineTest, HalfClosedSendersMessageStillReachesALiveConnection) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket receiver = connect_line();
  ASSERT_TRUE(line_connections_become(1));
  int reached_receiver = 0;
  for (int round = 0; round < 20; ++round) {
    LineSocket sender = connect_line();
    const std::string x = numbered("half", static_cast<std::size_t>(round));
    ASSERT_TRUE(sender.write(message_line(x) + "\n"));
    ASSERT_EQ(::shutdown(sender.fd(), SHUT_WR), 0) << std::strerror(errno);
    const std::vector<LineSocket*> both{&sender, &receiver};
    std::optional<LineFrom> got = read_line_from_any(both);
    ASSERT_TRUE(got) << "round " << round << ": message X went nowhere";
    EXPECT_EQ(got->line, message_line(x)) << "round " << round;
    reached_receiver += got->index == 1 ? 1 : 0;
    EXPECT_TRUE(sender.read_until_eof()) << "round " << round;
  }
  EXPECT_GT(reached_receiver, 0) << "twenty messages in a row came back to their half-closed sender";
  EXPECT_TRUE(line_connections_become(1));
}

TEST_P(HubLineTest, CrlfLinesAreAcceptedAndAnsweredWithPlainNewlines) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  ASSERT_TRUE(solo.write("message a\r\n"));
  EXPECT_EQ(solo.read_line(), "message a");  // read_line keeps a "\r": none was sent
  ASSERT_TRUE(solo.write("ok a\r\n"));
  EXPECT_EQ(solo.read_line(), "ok a");

  // A CRLF line cut into pieces, the "\r" and "\n" in different writes.
  EXPECT_TRUE(stat_becomes("line_oks_delivered", &HubStats::line_oks_delivered, 1));
  for (std::string_view piece : {"mess", "age b", "\r", "\n"}) {
    ASSERT_TRUE(solo.write(piece));
  }
  EXPECT_EQ(solo.read_line(), "message b");
  EXPECT_EQ(stats().line_protocol_errors, 0U);
}

// X is everything after the verb's one space: more spaces, tabs, a "\r" inside, UTF-8; it comes back
// byte for byte, and the ok must repeat it exactly.
TEST_P(HubLineTest, XIsForwardedByteForByte) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  const std::string x = "  two spaces\tthen a tab, a \r inside, \xc3\xbc and a trailing space ";
  ASSERT_TRUE(solo.send_line(message_line(x)));
  EXPECT_EQ(solo.read_line(), message_line(x));
  ASSERT_TRUE(solo.send_line(ok_line(x.substr(1))));  // one space short: another X
  ASSERT_TRUE(solo.send_line(ok_line(x)));
  EXPECT_EQ(solo.read_line(), ok_line(x));
  EXPECT_TRUE(stat_becomes("line_unmatched_oks", &HubStats::line_unmatched_oks, 1));
  EXPECT_EQ(stats().line_oks_delivered, 1U);
}

TEST_P(HubLineTest, UnknownCommandGetsAnErrorLineAndTheConnectionStaysUsable) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  // Not a verb, a verb in the wrong case, a verb without its space or X, and the empty line.
  const std::vector<std::string> bad{"hello", "MESSAGE x", "message", "message ", "ok", ""};
  for (const std::string& line : bad) {
    ASSERT_TRUE(solo.send_line(line));
    EXPECT_EQ(solo.read_line(), bare(kUnknownCommandLine)) << "after '" << line << "'";
  }
  EXPECT_TRUE(stat_becomes("line_protocol_errors", &HubStats::line_protocol_errors, bad.size()));
  ASSERT_TRUE(solo.send_line("message still here"));
  EXPECT_EQ(solo.read_line(), "message still here");
  EXPECT_EQ(stats().line_messages_in, 1U);
}

TEST_P(HubLineTest, OkForNothingPendingGetsNoReplyAndIsCounted) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  ASSERT_TRUE(solo.send_line("ok nothing"));
  EXPECT_TRUE(stat_becomes("line_unmatched_oks", &HubStats::line_unmatched_oks, 1));
  // The next line the connection gets is the forward of its next message, not a reply to the ok.
  ASSERT_TRUE(solo.send_line("message after"));
  EXPECT_EQ(solo.read_line(), "message after");
  const HubStats s = stats();
  EXPECT_EQ(s.line_oks_delivered, 0U);
  EXPECT_EQ(s.line_protocol_errors, 0U);
}

// A client that pipelines far more messages than its pending allowance, while the hub's memory is far
// below half its budget, is read to its end though nobody answers; once answers come, every message is
// forwarded and answered exactly once, with no error. Messages forwarded back to the pipeliner itself are
// not held against it (its oks can only follow its own pipelined writes).
TEST_P(HubLineTest, PipeliningClientFarPastItsAllowanceIsReadOnAndLosesNothing) {
  constexpr std::size_t kMessages = 100'000;
  HubConfig c = config();
  c.max_line_pending_bytes = std::size_t{16} * 1024;  // about 60 messages held at the answerer
  start_hub(c);
  LineSocket pipeliner = connect_line();
  LineSocket answerer = connect_line();
  ASSERT_TRUE(line_connections_become(2));
  const timeval send_limit{30, 0};  // a hub that stopped for good fails the test instead of hanging it
  ASSERT_EQ(::setsockopt(pipeliner.fd(), SOL_SOCKET, SO_SNDTIMEO, &send_limit, sizeof send_limit), 0);
  std::atomic<bool> written{false};
  std::jthread writer([&] {
    std::string burst;
    for (std::size_t i = 0; i < kMessages; ++i) {
      burst += message_line(numbered("p", i)) + "\n";
      if (burst.size() > 60'000 || i + 1 == kMessages) {
        if (!pipeliner.write(burst)) {
          return;
        }
        burst.clear();
      }
    }
    written = true;
  });
  const auto payload = [](const std::string& line, std::string_view verb) {
    return line.substr(verb.size());
  };

  // Nobody answers for a while: the hub reads every message all the same.
  std::vector<std::string> held;
  while (std::optional<std::string> line = answerer.read_line(Ms{500})) {
    held.push_back(*line);
  }
  ASSERT_FALSE(held.empty()) << "no forward reached the answerer";
  EXPECT_TRUE(stat_becomes("line_messages_in", &HubStats::line_messages_in, kMessages))
      << "the hub stopped reading a client over its allowance while memory was low";

  // Answers come: the answerer answers at once; the pipeliner answers its own forwards once its
  // writer is done (its socket has one writer at a time).
  for (const std::string& forward : held) {
    ASSERT_TRUE(answerer.send_line("ok " + payload(forward, "message ")));
  }
  std::size_t forwards = held.size();
  std::vector<std::string> own;
  std::set<std::string> oks;
  const std::vector<LineSocket*> both{&pipeliner, &answerer};
  while (oks.size() < kMessages) {
    if (written && writer.joinable()) {
      writer.join();
    }
    if (!writer.joinable()) {
      for (const std::string& x : own) {
        ASSERT_TRUE(pipeliner.send_line("ok " + x));
      }
      own.clear();
    }
    std::optional<LineFrom> got = read_line_from_any(both);
    ASSERT_TRUE(got.has_value()) << forwards << " forwards and " << oks.size() << " oks so far";
    if (got->line.starts_with("ok ")) {
      ASSERT_EQ(got->index, 0U) << "an ok reached the answerer: " << got->line;
      ASSERT_TRUE(oks.insert(got->line).second) << "duplicate " << got->line;
      continue;
    }
    ASSERT_TRUE(got->line.starts_with("message ")) << got->line;
    ++forwards;
    if (got->index == 1) {
      ASSERT_TRUE(answerer.send_line("ok " + payload(got->line, "message ")));
    } else {
      own.push_back(payload(got->line, "message "));
    }
  }
  EXPECT_EQ(forwards, kMessages);
  EXPECT_EQ(stats().line_protocol_errors, 0U);
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
}

// Clients that pipeline past their allowance and answer on the same connection: each one's oks wait
// behind its own messages. While hub memory is far below half the budget the hub reads them all, so
// none waits on another (a per-connection throttle alone stalled these four for good).
TEST_P(HubLineTest, PipelinersWhoseOksWaitBehindTheirOwnMessagesAllFinish) {
  start();
  EXPECT_EQ(run_pipelines_that_answer(), 0U) << "held back far below half the budget";
}

// The same on a small budget that the run passes by far (8.4 MB of pending cost against 8 MiB): past half
// of it the messages past each client's allowance are held back, a few bytes each, and each client is
// still read, so the oks queued behind them arrive (a throttle at half the budget stalled them for good).
TEST_P(HubLineTest, PipelinersWhoseOksWaitBehindTheirOwnMessagesFinishPastHalfTheBudget) {
  HubConfig c = config();
  c.max_memory = kSmallBudget;
  c.recv_buffer_size = 4096;
  c.recv_buffer_count = 64;
  // Four allowances past half the budget must stay under its high watermark, where a client holding
  // messages back is no longer read (as 1,000 clients at the default 1 MiB would on the default budget).
  c.max_line_pending_bytes = std::size_t{256} << 10;
  start_hub(c);
  EXPECT_GT(run_pipelines_that_answer(), 0U) << "nothing was held back: the run did not pass half the budget";
}

// A line left without its newline past the frame timeout ends the connection with `error line timeout`
// (the hub holds the partial line for it); one finished in time is served as usual.
TEST_P(HubLineTest, ALineLeftUnfinishedPastTheFrameTimeoutEndsTheConnection) {
  HubConfig c = config();
  c.frame_timeout = Ms{300};
  start_hub(c);
  LineSocket slow = connect_line();
  LineSocket stalled = connect_line();
  ASSERT_TRUE(line_connections_become(2));
  ASSERT_TRUE(slow.write("message in-ti"));
  ASSERT_TRUE(stalled.write("message never-finished"));
  std::this_thread::sleep_for(Ms{100});
  ASSERT_TRUE(slow.write("me\n"));  // finished well within the timeout
  std::optional<std::string> line = stalled.read_line_except("message in-time");
  ASSERT_TRUE(line.has_value()) << "no answer to a line left unfinished";
  EXPECT_EQ(*line + "\n", kLineTimeoutLine);
  EXPECT_FALSE(stalled.read_line(Ms{2000}).has_value());
  EXPECT_TRUE(stalled.eof());
  EXPECT_TRUE(line_connections_become(1));
  EXPECT_EQ(stats().frame_timeouts, 1U);
}

// A client the hub stopped reading (over its pending allowance) that resets its connection is seen at
// once, behind its unread bytes: its connection and its pending messages go (probe 7 found both held
// for good while the hub was quiet).
TEST_P(HubLineTest, AThrottledClientThatResetsIsGoneWithItsPendingMessages) {
  Pipelined run = start_pipelining(4096);
  ASSERT_FALSE(held_by_silent(run).empty());  // until the pipeliner is throttled
  ASSERT_GT(stats().line_pending, kFillMessages);
  ASSERT_GT(stats().line_held_back, 0U);
  ASSERT_LT(stats().line_messages_in, kFillMessages + kPipelined) << "the pipeliner was not throttled";
  const linger reset{1, 0};
  ASSERT_EQ(::setsockopt(run.pipeliner.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
  run.pipeliner.close();
  EXPECT_TRUE(line_connections_become(1));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, kFillMessages));
  EXPECT_TRUE(stat_becomes("line_held_back", &HubStats::line_held_back, 0));
}

// A throttled client takes in what it held back and is read again once hub memory falls below 3/8 of
// the budget, though its own messages are still unanswered: here the silent client answers the messages
// it sent itself, which held most of that memory, and still holds the pipeliner's.
TEST_P(HubLineTest, AThrottledClientIsReadAgainOnceMemoryFalls) {
  Pipelined run = start_pipelining(4096);
  ASSERT_FALSE(held_by_silent(run).empty());  // until the pipeliner is throttled
  ASSERT_LT(stats().line_messages_in, kFillMessages + kPipelined) << "the pipeliner was not throttled";
  std::string answers;
  for (std::size_t i = 0; i < kFillMessages; ++i) {
    answers += ok_line(numbered("f", i)) + "\n";
  }
  ASSERT_TRUE(run.silent.write(answers));
  EXPECT_TRUE(stat_becomes("line_messages_in", &HubStats::line_messages_in, kFillMessages + kPipelined))
      << "the pipeliner was not read again";
}

// Past half the budget the pending allowance is passed by at most one message (a 30 KB write of short
// messages once had 1,276 pending on a 4 KiB allowance): what comes after is held back, then the
// pipeliner is not read. Messages forwarded back to the pipeliner do not count (nor does it read them);
// those that reach the silent receiver are the ones held against it.
TEST_P(HubLineTest, PendingAllowanceIsPassedByAtMostOneSmallRead) {
  constexpr std::size_t kAllowance = 4096;
  Pipelined run = start_pipelining(kAllowance);
  const std::vector<std::string> held = held_by_silent(run);  // until the pipeliner is throttled
  const std::size_t bound = kAllowance / pending_cost(numbered("p", 0).size()) + 1;
  EXPECT_GE(held.size(), 1U);
  EXPECT_LE(held.size(), bound) << "messages held against a " << kAllowance << "-byte allowance";

  for (const std::string& x : held) {  // the answers bring it under half the allowance: read again
    ASSERT_TRUE(run.silent.send_line(ok_line(x)));
  }
  std::optional<std::string> next;
  do {
    next = run.silent.read_line();
  } while (next && !next->starts_with(message_line("p")));
  EXPECT_TRUE(next.has_value()) << "the pipeliner was not read again";
}

// The hub's limit counts the line without "\n" and without a "\r" before it.
class HubLineLimitTest : public HubLineTest {
 protected:
  static constexpr std::size_t kMaxLine = 1000;
  void start() {
    HubConfig c = config();
    c.max_line_bytes = kMaxLine;
    start_hub(c);
  }
  // X such that `message X` is `line_bytes` long.
  static std::string x_for(std::size_t line_bytes, char fill) {
    return std::string(line_bytes - kMessagePrefix.size(), fill);
  }
};

INSTANTIATE_TEST_SUITE_P(Shards, HubLineLimitTest, ::testing::Values(1U, 3U),
                         [](const ::testing::TestParamInfo<unsigned>& info) {
                           return info.param == 1 ? std::string("OneShard") : std::string("ThreeShards");
                         });

TEST_P(HubLineLimitTest, LineOfExactlyTheLimitIsAcceptedWithOrWithoutCr) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  const std::string x = x_for(kMaxLine, 'x');
  ASSERT_EQ(message_line(x).size(), kMaxLine);
  ASSERT_TRUE(solo.send_line(message_line(x)));
  EXPECT_EQ(solo.read_line(), message_line(x));
  const std::string y = x_for(kMaxLine, 'y');
  ASSERT_TRUE(solo.write(message_line(y) + "\r\n"));
  EXPECT_EQ(solo.read_line(), message_line(y));
  ASSERT_TRUE(solo.send_line(ok_line(x)));
  EXPECT_EQ(solo.read_line(), ok_line(x));
  EXPECT_EQ(stats().line_protocol_errors, 0U);
}

TEST_P(HubLineLimitTest, LineOneByteOverTheLimitGetsAnErrorThenEof) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  ASSERT_TRUE(solo.send_line(message_line(x_for(kMaxLine + 1, 'x'))));
  EXPECT_EQ(solo.read_line(), bare(kLineTooLongLine));
  std::vector<std::string> after;
  EXPECT_TRUE(solo.read_until_eof(kWait, &after));
  EXPECT_TRUE(after.empty()) << "first line after the error: " << after.front();
  EXPECT_TRUE(stat_becomes("line_protocol_errors", &HubStats::line_protocol_errors, 1));
  EXPECT_EQ(stats().line_messages_in, 0U);
  solo.close();
  EXPECT_TRUE(line_connections_become(0));
}

// A full line and its "\r" without the "\n" may still end within the limit: the hub must hold them.
TEST_P(HubLineLimitTest, LineOfTheLimitIsHeldWhileItsCrWaitsForTheNewline) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  const std::string x = x_for(kMaxLine, 'x');
  ASSERT_TRUE(solo.write(message_line(x) + "\r"));
  ASSERT_TRUE(stat_becomes("bytes_in", &HubStats::bytes_in, kMaxLine + 1));
  EXPECT_EQ(stats().line_protocol_errors, 0U);
  ASSERT_TRUE(solo.write("\n"));
  EXPECT_EQ(solo.read_line(), message_line(x));
  EXPECT_EQ(stats().line_protocol_errors, 0U);
}

// Without a "\r" at its end, a partial line one byte over the limit can no longer fit: refused at once.
TEST_P(HubLineLimitTest, PartialLineOneByteOverTheLimitIsRefusedBeforeItsNewline) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  ASSERT_TRUE(solo.write(message_line(x_for(kMaxLine + 1, 'w'))));
  EXPECT_EQ(solo.read_line(), bare(kLineTooLongLine));
  EXPECT_TRUE(solo.read_until_eof());
  EXPECT_EQ(stats().line_messages_in, 0U);
}

TEST_P(HubLineLimitTest, EndlessLineIsRefusedBeforeAnyNewline) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket solo = connect_line();
  ASSERT_TRUE(solo.write(std::string(2 * kMaxLine, 'z')));  // no newline, now or ever
  EXPECT_EQ(solo.read_line(), bare(kLineTooLongLine));
  EXPECT_TRUE(solo.read_until_eof());
  EXPECT_TRUE(stat_becomes("line_protocol_errors", &HubStats::line_protocol_errors, 1));
  EXPECT_EQ(stats().line_messages_in, 0U);
}

TEST_P(HubLineTest, OksForTheSameXGoToItsSendersOldestFirst) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket a = connect_line();
  LineSocket b = connect_line();
  LineSocket c = connect_line();
  ASSERT_TRUE(line_connections_become(3));
  // A's message is recorded (it is forwarded only after that) before B sends the same X.
  ASSERT_TRUE(a.send_line("message dup"));
  ASSERT_TRUE(stat_becomes("line_forwards", &HubStats::line_forwards, 1));
  ASSERT_TRUE(b.send_line("message dup"));
  ASSERT_TRUE(stat_becomes("line_forwards", &HubStats::line_forwards, 2));

  // The forwards may land anywhere, so `message dup` lines are passed over.
  const std::vector<LineSocket*> senders{&a, &b};
  const auto next_ok = [&]() -> std::optional<LineFrom> {
    for (;;) {
      std::optional<LineFrom> got = read_line_from_any(senders);
      if (!got || got->line != "message dup") {
        return got;
      }
    }
  };
  ASSERT_TRUE(c.send_line("ok dup"));
  std::optional<LineFrom> first = next_ok();
  ASSERT_TRUE(first.has_value()) << "no ok after the first answer";
  EXPECT_EQ(first->line, "ok dup");
  EXPECT_EQ(first->index, 0U) << "the first ok went to the newer sender";
  ASSERT_TRUE(c.send_line("ok dup"));
  std::optional<LineFrom> second = next_ok();
  ASSERT_TRUE(second.has_value()) << "no ok after the second answer";
  EXPECT_EQ(second->line, "ok dup");
  EXPECT_EQ(second->index, 1U);

  // A third ok matches nothing.
  ASSERT_TRUE(c.send_line("ok dup"));
  EXPECT_TRUE(stat_becomes("line_unmatched_oks", &HubStats::line_unmatched_oks, 1));
  EXPECT_TRUE(stat_becomes("line_oks_delivered", &HubStats::line_oks_delivered, 2));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
}

// 8 connections, one of them sending 4000 distinct messages: the count each receives is
// multinomial(4000, 1/8 each) when the pick is uniform over every live connection. Receivers answer, and
// the sender keeps a bounded window of messages unanswered, as the hub caps what one connection may have
// pending.
TEST_P(HubLineTest, ForwardsAreUniformOverEveryConnectionSenderIncluded) {
  constexpr std::size_t kClients = 8;
  constexpr std::size_t kMessages = 4000;
  constexpr std::size_t kWindow = 64;  // the sender's messages awaiting their ok at most
  // The 0.999 quantile of chi-square with kClients - 1 = 7 degrees of freedom: a uniform pick fails
  // this one run in a thousand.
  constexpr double kChiSquare999 = 24.32;

  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<LineSocket> clients;
  for (std::size_t i = 0; i < kClients; ++i) {
    clients.push_back(connect_line());
  }
  ASSERT_TRUE(line_connections_become(kClients));
  LineSocket& sender = clients[0];
  const std::string_view forwarded_prefix = "message m";
  const std::string_view ok_prefix = "ok m";

  std::size_t sent = 0;
  std::size_t acknowledged = 0;
  const auto top_up = [&] {
    std::string burst;
    for (; sent < kMessages && sent - acknowledged < kWindow; ++sent) {
      burst += message_line(numbered("m", sent)) + "\n";
    }
    return burst.empty() || sender.write(burst);
  };
  std::vector<std::size_t> received(kClients, 0);
  std::vector<int> seen(kMessages, 0);
  std::size_t total = 0;
  ASSERT_TRUE(top_up());
  const Clock::time_point until = Clock::now() + kWait;
  while (acknowledged < kMessages && Clock::now() < until) {
    std::vector<pollfd> fds;
    fds.reserve(clients.size());
    for (const LineSocket& c : clients) {
      fds.push_back(pollfd{c.fd(), POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0) {
      continue;  // the timeout only lets the deadline be checked
    }
    for (std::size_t i = 0; i < kClients; ++i) {
      if (fds[i].revents == 0) {
        continue;
      }
      ASSERT_TRUE(clients[i].receive_some()) << "client " << i << " lost its connection";
      while (std::optional<std::string> line = clients[i].buffered_line()) {
        if (i == 0 && line->rfind(ok_prefix, 0) == 0) {
          ++acknowledged;
          continue;
        }
        ASSERT_EQ(line->rfind(forwarded_prefix, 0), 0U) << "client " << i << ": unexpected '" << *line << "'";
        const std::size_t n = std::stoul(line->substr(forwarded_prefix.size()));
        ASSERT_LT(n, kMessages);
        ++seen[n];
        ++received[i];
        ++total;
        ASSERT_TRUE(clients[i].send_line(ok_line(numbered("m", n))));
      }
    }
    ASSERT_TRUE(top_up());
  }
  ASSERT_EQ(acknowledged, kMessages) << "oks missing";
  ASSERT_EQ(total, kMessages) << "forwards lost or duplicated";
  for (std::size_t n = 0; n < kMessages; ++n) {
    ASSERT_EQ(seen[n], 1) << "message m" << n;
  }
  const HubStats s = stats();
  EXPECT_EQ(s.line_forwards, kMessages);
  EXPECT_EQ(s.line_messages_in, kMessages);
  EXPECT_EQ(s.line_oks_delivered, kMessages);
  EXPECT_EQ(s.line_unmatched_oks, 0U);

  const double expected = static_cast<double>(kMessages) / kClients;
  double chi_square = 0;
  std::string counts;
  for (std::size_t r : received) {
    const double d = static_cast<double>(r) - expected;
    chi_square += d * d / expected;
    counts += std::to_string(r) + " ";
  }
  EXPECT_LT(chi_square, kChiSquare999) << "per-connection counts: " << counts;
  EXPECT_GT(received[0], 0U) << "the sender never received its own message";
}

TEST_P(HubLineTest, OriginThatLeavesHasItsPendingMessageDropped) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket origin = connect_line();
  LineSocket other = connect_line();
  ASSERT_TRUE(line_connections_become(2));
  int to_origin = 0;
  const std::string x = land_on_other(origin, other, "orphan", &to_origin);
  ASSERT_FALSE(x.empty());
  ASSERT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 1));

  origin.close();
  ASSERT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
  ASSERT_TRUE(line_connections_become(1));
  // The receiver answers late: nobody is waiting any more.
  ASSERT_TRUE(other.send_line(ok_line(x)));
  EXPECT_TRUE(stat_becomes("line_unmatched_oks", &HubStats::line_unmatched_oks, 1));
  const HubStats s = stats();
  EXPECT_EQ(s.line_oks_delivered, static_cast<std::uint64_t>(to_origin));
  EXPECT_EQ(s.line_reforwards, 0U);
  // The receiver is still served.
  ASSERT_TRUE(other.send_line("message later"));
  EXPECT_EQ(other.read_line(), "message later");
}

TEST_P(HubLineTest, TargetThatLeavesUnansweredHasItsMessageForwardedAgain) {
  ASSERT_NO_FATAL_FAILURE(start());
  LineSocket origin = connect_line();
  LineSocket target = connect_line();
  ASSERT_TRUE(line_connections_become(2));
  int to_origin = 0;
  const std::string x = land_on_other(origin, target, "r", &to_origin);
  ASSERT_FALSE(x.empty());

  target.close();  // without answering
  // The origin is the only live connection left: the message comes to it.
  EXPECT_EQ(origin.read_line(), message_line(x));
  EXPECT_TRUE(stat_becomes("line_reforwards", &HubStats::line_reforwards, 1));
  EXPECT_EQ(stats().line_forwards, static_cast<std::uint64_t>(to_origin) + 2);
  ASSERT_TRUE(origin.send_line(ok_line(x)));
  EXPECT_EQ(origin.read_line(), ok_line(x));
  EXPECT_TRUE(stat_becomes("line_oks_delivered", &HubStats::line_oks_delivered,
                           static_cast<std::uint64_t>(to_origin) + 1));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
  EXPECT_EQ(stats().line_unmatched_oks, 0U);
}

TEST_P(HubLineTest, WithoutReforwardAMessageWhoseTargetLeftWaitsUntilItsOriginLeaves) {
  HubConfig c = config();
  c.line_reforward = false;
  ASSERT_NO_FATAL_FAILURE(start_hub(c));
  LineSocket origin = connect_line();
  LineSocket target = connect_line();
  ASSERT_TRUE(line_connections_become(2));
  int to_origin = 0;
  const std::string x = land_on_other(origin, target, "r", &to_origin);
  ASSERT_FALSE(x.empty());

  target.close();
  ASSERT_TRUE(line_connections_become(1));
  // A barrier: an ok the origin sends after the target's departure was seen comes after it. (On one
  // shard everything is one queue; on three, the departure was posted before the gauge moved.)
  ASSERT_TRUE(origin.send_line("ok barrier"));
  ASSERT_TRUE(stat_becomes("line_unmatched_oks", &HubStats::line_unmatched_oks, 1));
  EXPECT_EQ(stats().line_reforwards, 0U);
  EXPECT_EQ(stats().line_forwards, static_cast<std::uint64_t>(to_origin) + 1);
  EXPECT_FALSE(origin.read_line(0ms).has_value()) << "the message was forwarded again";
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 1));

  origin.close();
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
  EXPECT_TRUE(line_connections_become(0));
}

TEST_P(HubLineTest, LineClientGetsItsOkAmongAnsweringPeers) {
  ASSERT_NO_FATAL_FAILURE(start());
  Responders peers(hub_->line_port(), 3);
  ASSERT_TRUE(line_connections_become(3));
  client::LineClientOptions options;
  options.host = "127.0.0.1";
  options.port = hub_->line_port();
  options.message = "from the line client";
  options.ok_delay = 0ms;
  options.timeout = kWait;
  options.max_attempts = 1;
  Result<client::LineOutcome> outcome = client::run_line_client(options);
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->attempts, 1U);
  EXPECT_EQ(outcome->reconnects, 0U);
  EXPECT_EQ(outcome->timeouts, 0U);
  EXPECT_TRUE(stat_becomes("line_oks_delivered", &HubStats::line_oks_delivered, 1));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
  EXPECT_TRUE(line_connections_become(3));
}

// The client's first hub stops while the client waits for its ok; a second hub comes up on the same line
// port, and the client's next attempts reach it. The client answers its own messages only after a
// minute, so on the first hub (where it is alone) its message can only be unanswered, and on the second
// one of the answering peers must take it.
TEST_P(HubLineTest, LineClientRecoversWhenTheHubRestartsOnTheSamePort) {
  HubConfig c = config();
  ASSERT_NO_FATAL_FAILURE(start_hub(c));
  const std::uint16_t port = hub_->line_port();

  std::atomic<bool> cancel{false};
  std::atomic<bool> restarted{false};
  std::atomic<int> first_failure{-1};  // the first retry's ErrorDomain; -1 before it
  client::LineClientOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  options.message = "survivor";
  options.ok_delay = 60s;
  // Bounds an attempt whose message the second hub gives back to the client itself (1 in 8).
  options.timeout = 1s;
  options.max_attempts = 20;
  options.backoff_initial = 10ms;
  options.backoff_max = 50ms;
  options.on_retry = [&](const client::LineRetry& retry) {
    if (retry.attempt == 1) {
      first_failure.store(static_cast<int>(retry.why.domain));
      eventually([&] { return restarted.load() || cancel.load(); }, kWait);
    }
  };
  std::optional<Result<client::LineOutcome>> outcome;
  std::thread runner([&] { outcome.emplace(client::run_line_client(options, &cancel)); });
  struct JoinOnExit {
    std::thread& thread;
    std::atomic<bool>& cancel;
    ~JoinOnExit() {
      if (thread.joinable()) {
        cancel.store(true);
        thread.join();
      }
    }
  } join_on_exit{runner, cancel};

  // The client is connected and waiting: its message reached the hub.
  ASSERT_TRUE(stat_becomes("line_messages_in", &HubStats::line_messages_in, 1));
  hub_->stop();
  hub_.reset();
  c.line_port = port;
  // The freed port is ephemeral: another process may hold it for a while (a parallel test's hub).
  Result<std::unique_ptr<Hub>> second = system_error(EADDRINUSE, "not started");
  eventually([&] {
    second = Hub::start(c);
    return second.ok() || !second.error().is_system(EADDRINUSE);
  });
  ASSERT_TRUE(second.ok()) << second.error().message;
  hub_ = std::move(second).value();
  ASSERT_EQ(hub_->line_port(), port);
  Responders peers(port, 7);
  ASSERT_TRUE(line_connections_become(7));
  restarted.store(true);

  runner.join();
  ASSERT_TRUE(outcome.has_value());
  ASSERT_TRUE(outcome->ok()) << outcome->error().message;
  EXPECT_EQ(first_failure.load(), static_cast<int>(ErrorDomain::kNone))
      << "the first attempt should end with the hub's EOF, not a system error";
  EXPECT_GE((*outcome)->attempts, 2U);
  EXPECT_GE((*outcome)->reconnects, 1U);
  EXPECT_TRUE(stat_becomes("line_oks_delivered", &HubStats::line_oks_delivered, 1));
  // The responder thread counts an answer once its write returns, which may be after the ok arrived.
  EXPECT_TRUE(eventually([&] { return peers.answered() >= 1; }));
}

// Line clients that each sent messages nobody answers, all of them forwarded and pending.
class HubLineStopTest : public HubLineTest {
 protected:
  static constexpr std::size_t kClients = 8;
  static constexpr std::size_t kEach = 20;

  void connect_and_leave_pending() {
    for (std::size_t i = 0; i < kClients; ++i) {
      clients_.push_back(connect_line());
    }
    ASSERT_TRUE(line_connections_become(kClients));
    for (std::size_t i = 0; i < kClients; ++i) {
      for (std::size_t k = 0; k < kEach; ++k) {
        ASSERT_TRUE(clients_[i].send_line(message_line(numbered(numbered("p", i) + "-", k))));
      }
    }
    ASSERT_TRUE(stat_becomes("line_forwards", &HubStats::line_forwards, kClients * kEach));
    ASSERT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, kClients * kEach));
  }

  // Every client's lines up to the EOF the stop gives it; each must be a forward of a `p` message.
  std::vector<std::string> read_all_until_eof() {
    std::vector<std::string> all;
    for (std::size_t i = 0; i < kClients; ++i) {
      std::vector<std::string> lines;
      EXPECT_TRUE(clients_[i].read_until_eof(kWait, &lines)) << "client " << i << " got no EOF";
      for (const std::string& line : lines) {
        EXPECT_EQ(line.rfind("message p", 0), 0U) << "client " << i << ": unexpected '" << line << "'";
      }
      all.insert(all.end(), lines.begin(), lines.end());
    }
    return all;
  }

  std::vector<LineSocket> clients_;
};

INSTANTIATE_TEST_SUITE_P(Shards, HubLineStopTest, ::testing::Values(1U, 3U),
                         [](const ::testing::TestParamInfo<unsigned>& info) {
                           return info.param == 1 ? std::string("OneShard") : std::string("ThreeShards");
                         });

// Stopping the hub while line messages wait for answers ends every line stream, after the forwards
// already queued, and frees the pending table (the sanitizer build checks the frees).
TEST_P(HubLineStopTest, StopWithMessagesPendingEndsEveryLineStream) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(connect_and_leave_pending());
  hub_->stop();
  const std::vector<std::string> lines = read_all_until_eof();
  std::set<std::string> distinct(lines.begin(), lines.end());
  EXPECT_EQ(distinct.size(), kClients * kEach) << "a forward queued before the stop was lost";
  const HubStats s = stats();
  EXPECT_EQ(s.line_connections, 0U);
  EXPECT_EQ(s.line_pending, 0U);
  EXPECT_EQ(s.outbound_queued_bytes, 0U);
}

// The connections a stop closes did not leave of their own accord, and the ones still open are about
// to be closed too: forwarding their messages again would serve nobody and hand clients duplicates. So
// each message arrives once, and line_reforwards (messages really forwarded again) stays 0.
TEST_P(HubLineStopTest, StopForwardsNothingAgain) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(connect_and_leave_pending());
  hub_->stop();
  const std::vector<std::string> lines = read_all_until_eof();
  EXPECT_EQ(lines.size(), kClients * kEach);
  const HubStats s = stats();
  EXPECT_EQ(s.line_forwards, kClients * kEach);
  EXPECT_EQ(s.line_reforwards, 0U);
}

// 200 clients each send two messages in turn, answer every message forwarded to them, and close once
// their second ok is in: afterwards the hub holds no connection, no pending message and no queued byte.
TEST_P(HubLineTest, ChurnOfTwoHundredClientsLeavesNoState) {
  constexpr std::size_t kClients = 200;
  constexpr int kRounds = 2;
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<LineSocket> clients;
  std::vector<int> round(kClients, 0);
  for (std::size_t i = 0; i < kClients; ++i) {
    clients.push_back(connect_line());
  }
  ASSERT_TRUE(line_connections_become(kClients));
  const auto x_of = [](std::size_t i, int r) {
    return numbered(numbered("c", i) + "-", static_cast<std::size_t>(r));
  };
  for (std::size_t i = 0; i < kClients; ++i) {
    ASSERT_TRUE(clients[i].send_line(message_line(x_of(i, 0))));
  }

  std::size_t done = 0;
  const Clock::time_point until = Clock::now() + 2 * kWait;
  while (done < kClients && Clock::now() < until) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < kClients; ++i) {
      if (clients[i].open()) {
        fds.push_back(pollfd{clients[i].fd(), POLLIN, 0});
        which.push_back(i);
      }
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0) {
      continue;  // the timeout only lets the deadline be checked
    }
    for (std::size_t k = 0; k < fds.size(); ++k) {
      const std::size_t i = which[k];
      if (fds[k].revents == 0) {
        continue;
      }
      ASSERT_TRUE(clients[i].receive_some()) << "client " << i << " lost its connection";
      while (clients[i].open()) {
        std::optional<std::string> line = clients[i].buffered_line();
        if (!line) {
          break;
        }
        const LineCommand command = parse_line(*line);
        if (command.verb == LineCommand::Verb::kMessage) {
          ASSERT_TRUE(clients[i].send_line(ok_line(command.payload)));
          continue;
        }
        ASSERT_EQ(*line, ok_line(x_of(i, round[i]))) << "client " << i;
        if (++round[i] < kRounds) {
          ASSERT_TRUE(clients[i].send_line(message_line(x_of(i, round[i]))));
        } else {
          clients[i].close();  // messages still unread here are forwarded again by the hub
          ++done;
        }
      }
    }
  }
  ASSERT_EQ(done, kClients) << "clients still waiting for an ok";

  EXPECT_TRUE(line_connections_become(0));
  EXPECT_TRUE(stat_becomes("line_pending", &HubStats::line_pending, 0));
  EXPECT_TRUE(stat_becomes("outbound_queued_bytes", &HubStats::outbound_queued_bytes, 0));
  EXPECT_TRUE(stat_becomes("buffer_bytes_in_use", &HubStats::buffer_bytes_in_use, 0));
  const HubStats s = stats();
  EXPECT_EQ(s.line_messages_in, kClients * kRounds);
  EXPECT_EQ(s.line_oks_delivered, kClients * kRounds);
  EXPECT_EQ(s.line_unmatched_oks, 0U);
  EXPECT_EQ(s.line_protocol_errors, 0U);
  EXPECT_EQ(s.line_forwards, s.line_messages_in + s.line_reforwards);
  const std::string metrics = hub_->metrics_text();
  EXPECT_NE(metrics.find("\nringhub_line_pending_messages 0\n"), std::string::npos) << metrics;
}

}  // namespace
}  // namespace ringhub::testing
