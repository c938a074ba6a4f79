// Hub robustness against hostile or broken clients: every protocol violation gets its ERROR frame and a
// clean close while the hub keeps serving; senders vanishing mid-frame, slow consumers, pinned receive
// buffers, a full server, garbage floods and connection churn leave no stall, no leak, bounded memory.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/frame_codec.hpp"
#include "tests/transport/hub_fixture.hpp"

namespace ringhub::testing {
namespace {

using client::Delivery;
using client::Frame;
using RelayClient = SocketRelayClient;  // these tests reach under the protocol: plain sockets
using protocol::ErrorCode;
using protocol::FrameType;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

constexpr std::size_t kKiB = std::size_t{1} << 10;
constexpr std::size_t kMiB = std::size_t{1} << 20;

// How long any single read from the hub may take before the test calls it a failure (a bound, not
// a synchronisation delay: every wait returns as soon as its frame arrives).
constexpr std::chrono::milliseconds kWait = 10s;

// A header with any field values, valid or not, written byte by byte (not through the codec under test).
Bytes raw_header(std::uint8_t type, std::uint8_t count, std::uint16_t flags, std::uint32_t length) {
  Bytes out(protocol::kHeaderSize);
  out[0] = type;
  out[1] = count;
  out[2] = static_cast<std::uint8_t>(flags & 0xFF);
  out[3] = static_cast<std::uint8_t>(flags >> 8);
  codec::store_u32(out.data() + 4, length);
  return out;
}

Bytes join(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

// Deterministic non-frame bytes.
Bytes filler(std::size_t n, std::uint8_t seed = 0x5a) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = static_cast<std::uint8_t>(seed + i * 31);
  }
  return out;
}

Bytes id_bytes(UserId id) {
  Bytes out(protocol::kIdSize);
  codec::store_u64(out.data(), id);
  return out;
}

bool is_utf8(std::span<const std::uint8_t> text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const std::uint8_t c = text[i];
    std::size_t extra = 0;
    if (c < 0x80) {
      extra = 0;
    } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
      extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
    } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
      extra = 3;
    } else {
      return false;
    }
    if (text.size() - i - 1 < extra) {
      return false;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      if ((text[i + k] & 0xC0) != 0x80) {
        return false;
      }
    }
    i += 1 + extra;
  }
  return true;
}

// The hub's last frame on a refused connection: ERROR with `code` and a short, non-empty UTF-8 reason.
void expect_error_frame(const Frame& frame, ErrorCode code) {
  ASSERT_EQ(static_cast<int>(frame.header.type), static_cast<int>(FrameType::kError));
  EXPECT_EQ(frame.header.count, 0);
  EXPECT_EQ(frame.header.flags, 0);
  ASSERT_GE(frame.payload.size(), 2U) << "an ERROR frame carries a code and a non-empty reason";
  EXPECT_EQ(frame.payload[0], static_cast<std::uint8_t>(code));
  const auto reason = std::span<const std::uint8_t>(frame.payload).subspan(1);
  EXPECT_LE(reason.size(), protocol::kMaxErrorReasonSize);
  EXPECT_TRUE(is_utf8(reason)) << "the reason is not UTF-8";
}

// After ERROR the hub closes: the next read is a clean EOF, not another frame, a reset or a timeout.
void expect_eof(RelayClient& client) {
  Result<Frame> after = client.read_frame(kWait);
  ASSERT_FALSE(after.ok()) << "the hub sent a frame of type 0x" << std::hex
                           << static_cast<int>(after->header.type) << " after its ERROR frame";
  EXPECT_EQ(after.error().domain, ErrorDomain::kNone) << "wanted EOF, got: " << after.error().message;
}

// Exactly `replies` IDENTITY_REPLYs (to the frames sent before the bad one: the client is owed them),
// then ERROR with `code`, then EOF.
void expect_error_then_eof(RelayClient& client, ErrorCode code, int replies = 0) {
  for (int i = 0; i < replies; ++i) {
    Result<Frame> frame = client.read_frame(kWait);
    ASSERT_TRUE(frame.ok()) << "wanted IDENTITY_REPLY " << i << ", got: " << frame.error().message;
    ASSERT_EQ(frame->header.type, FrameType::kIdentityReply) << "reply " << i << " before the ERROR";
  }
  Result<Frame> frame = client.read_frame(kWait);
  ASSERT_TRUE(frame.ok()) << "wanted ERROR " << static_cast<int>(code) << ", got: " << frame.error().message;
  ASSERT_NO_FATAL_FAILURE(expect_error_frame(*frame, code));
  expect_eof(client);
}

void set_socket_option(int fd, int option, const void* value, socklen_t size) {
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, option, value, size), 0) << std::strerror(errno);
}

// A receiver that never reads: a small, fixed receive buffer (no autotuning), so the rest of what is
// relayed to it queues in the hub. Not a few KiB: TCP's silly-window avoidance would then make the final
// read-to-EOF crawl (~100 ms per 4 KiB frame here), past the hub's 5 s wait for its ERROR to be read.
void shrink_receive_buffer(int fd) {
  const int size = 64 * 1024;
  set_socket_option(fd, SO_RCVBUF, &size, sizeof size);
}

// Bounds a blocking send, so a stalled hub fails the test instead of hanging it.
void bound_sends(int fd, std::chrono::seconds limit) {
  const timeval tv{static_cast<time_t>(limit.count()), 0};
  set_socket_option(fd, SO_SNDTIMEO, &tv, sizeof tv);
}

// Reset instead of FIN on close.
void abort_on_close(int fd) {
  const linger hard{1, 0};
  set_socket_option(fd, SO_LINGER, &hard, sizeof hard);
}

class HubRobustnessTest : public HubTest {
 protected:
  // The counters once nothing is queued for any client: the hub at rest.
  HubStats quiet_stats() {
    EXPECT_TRUE(eventually([&] { return stats().outbound_queued_bytes == 0; }));
    return stats();
  }

  // Waits until every receive buffer is back in the ring and the memory charged to the budget is no
  // more than at `idle` (pooled send contexts are given back after an idle tick).
  bool wait_at_rest(const HubStats& idle) {
    return eventually([&] {
      const HubStats now = stats();
      return now.buffer_bytes_in_use == idle.buffer_bytes_in_use && now.memory_in_use <= idle.memory_in_use;
    });
  }

  // `from` relays `text` to `to`, whose next delivery must be exactly that.
  static void expect_relay(SocketPeer& from, SocketPeer& to, std::string_view text) {
    const Bytes body = bytes_of(text);
    const UserId receiver = to.id;
    Result<void> sent = from.client.relay(std::span(&receiver, 1), body);
    ASSERT_TRUE(sent.ok()) << sent.error().message;
    Result<Delivery> got = to.client.next_delivery(kWait);
    ASSERT_TRUE(got.ok()) << "user " << to.id << " waiting for '" << text << "': " << got.error().message;
    EXPECT_EQ(got->sender, from.id);
    EXPECT_EQ(got->body, body);
  }

  void expect_only_error_count(ErrorCode code, std::uint64_t n) {
    const auto index = static_cast<std::size_t>(code);
    EXPECT_TRUE(eventually([&] { return stats().protocol_errors[index] == n; }))
        << "protocol_errors[" << index << "] = " << stats().protocol_errors[index] << ", wanted " << n;
    const HubStats s = stats();
    for (std::size_t i = 1; i < kErrorCodeSlots; ++i) {
      if (i != index) {
        EXPECT_EQ(s.protocol_errors[i], 0U) << "protocol_errors[" << i << "]";
      }
    }
  }
};

// --- 1. Protocol violations: ERROR with the right code, then EOF; the hub keeps serving.

struct Violation {
  std::string name;
  Bytes bytes;  // what the offending client writes, in one write
  ErrorCode code;
  // Valid IDENTITYs written ahead of the bad frame: each is answered before the ERROR (docs/protocol.md).
  int replies_before = 0;
};

void PrintTo(const Violation& v, std::ostream* os) {
  *os << v.name << " (" << v.bytes.size() << " bytes, code " << static_cast<int>(v.code) << ")";
}

constexpr std::uint8_t kIdentity = 0x01;
constexpr std::uint8_t kList = 0x02;
constexpr std::uint8_t kRelay = 0x03;
constexpr auto kOneOverMaxBody = static_cast<std::uint32_t>(protocol::kIdSize + protocol::kMaxBodySize + 1);

std::vector<Violation> violations() {
  const Bytes identity = raw_header(kIdentity, 0, 0, 0);
  return {
      // 1: unknown type, including a client sending hub frame types.
      {"Type00", raw_header(0x00, 0, 0, 0), ErrorCode::kUnknownType},
      {"Type04", raw_header(0x04, 0, 0, 0), ErrorCode::kUnknownType},
      {"Type81IdentityReply", join({raw_header(0x81, 0, 0, 8), id_bytes(1)}), ErrorCode::kUnknownType},
      {"TypeFFError", raw_header(0xFF, 0, 0, 0), ErrorCode::kUnknownType},
      {"UnknownTypeBeatsFlags", raw_header(0x07, 3, 1, 5), ErrorCode::kUnknownType},
      // 2: bad receiver count.
      {"RelayCountZero", join({raw_header(kRelay, 0, 0, 8), filler(8)}), ErrorCode::kBadReceiverCount},
      {"RelayCountZeroHugeLength", raw_header(kRelay, 0, 0, 0xFFFFFFFF), ErrorCode::kBadReceiverCount},
      {"IdentityCountOne", raw_header(kIdentity, 1, 0, 0), ErrorCode::kBadReceiverCount},
      {"ListCountBeatsLength", raw_header(kList, 1, 0, 4), ErrorCode::kBadReceiverCount},
      // 3: frame too large, judged by the header alone.
      {"RelayBodyOneByteOverLimit", raw_header(kRelay, 1, 0, kOneOverMaxBody), ErrorCode::kFrameTooLarge},
      {"RelayLengthMax", raw_header(kRelay, 1, 0, 0xFFFFFFFF), ErrorCode::kFrameTooLarge},
      {"RelayTooLargeWithItsPayload",
       join({raw_header(kRelay, 1, 0, kOneOverMaxBody), filler(kOneOverMaxBody)}), ErrorCode::kFrameTooLarge},
      // 4: length inconsistent with count.
      {"IdentityLength4", join({raw_header(kIdentity, 0, 0, 4), filler(4)}), ErrorCode::kLengthInconsistent},
      {"ListLength8", join({raw_header(kList, 0, 0, 8), filler(8)}), ErrorCode::kLengthInconsistent},
      {"RelayCount2Length8", join({raw_header(kRelay, 2, 0, 8), id_bytes(1)}),
       ErrorCode::kLengthInconsistent},
      // length - 8 * count would wrap around: must be 4, not 3.
      {"RelayCount1Length4", join({raw_header(kRelay, 1, 0, 4), filler(4)}), ErrorCode::kLengthInconsistent},
      // 5: nonzero flags, checked before count and length.
      {"IdentityFlags1", raw_header(kIdentity, 0, 1, 0), ErrorCode::kNonzeroFlags},
      {"RelayFlags8000", join({raw_header(kRelay, 1, 0x8000, 12), id_bytes(1), filler(4)}),
       ErrorCode::kNonzeroFlags},
      {"FlagsBeatCount", raw_header(kIdentity, 1, 0x0100, 9), ErrorCode::kNonzeroFlags},
      // Garbage after the bad header in the same write: the ERROR frame must still arrive before EOF.
      {"UnknownTypeThenGarbage", join({raw_header(0x00, 0, 0, 0), filler(256 * kKiB)}),
       ErrorCode::kUnknownType},
      {"NonzeroFlagsThenGarbage", join({raw_header(kList, 0, 2, 0), filler(64 * kKiB, 0x13)}),
       ErrorCode::kNonzeroFlags},
      // Valid frames ahead of the bad one may be answered; the IDENTITY behind it must not be.
      {"AnsweredUpToTheBadFrame", join({identity, identity, raw_header(kRelay, 0, 0, 0), identity}),
       ErrorCode::kBadReceiverCount, 2},
  };
}

class HubRobustnessViolationTest : public HubRobustnessTest,
                                   public ::testing::WithParamInterface<Violation> {};

TEST_P(HubRobustnessViolationTest, GetsErrorThenEofAndHubKeepsServing) {
  const Violation& violation = GetParam();
  start_hub(test_config());
  SocketPeer a = connect_socket_peer();  // unrelated clients, connected before the violation
  SocketPeer b = connect_socket_peer();
  RelayClient offender = connect_socket();
  ASSERT_TRUE(wait_connections(3));

  Result<void> sent = offender.send_raw(violation.bytes);
  ASSERT_TRUE(sent.ok()) << "the hub must read (and discard) what follows the bad header: "
                         << sent.error().message;
  ASSERT_NO_FATAL_FAILURE(expect_error_then_eof(offender, violation.code, violation.replies_before));
  EXPECT_TRUE(wait_connections(2));
  expect_only_error_count(violation.code, 1);
  offender.close();

  expect_relay(a, b, "still here");
  expect_relay(b, a, "me too");
  SocketPeer c = connect_socket_peer();
  SocketPeer d = connect_socket_peer();
  expect_relay(c, d, "new pair");
  expect_relay(d, c, "works");
  expect_relay(c, a, "and reaches old clients");
  EXPECT_EQ(stats().relays, 5U);
}

INSTANTIATE_TEST_SUITE_P(AllCodes, HubRobustnessViolationTest, ::testing::ValuesIn(violations()),
                         [](const ::testing::TestParamInfo<Violation>& info) { return info.param.name; });

// Every code on one hub: the counters add up per code.
// --shards by hand with more --max-connections than their file tables hold: the hub keeps to what
// they hold (so one more gets ERROR 7), rather than leaving the excess unanswered in the listen queue.
TEST_F(HubRobustnessTest, MaxConnectionsIsWhatTheShardsFileTablesHold) {
  HubConfig config = test_config(2);
  config.max_connections = 10'000'000;  // far more than two tables of at most 64k slots
  start_hub(config);
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);  // the hub raised its soft limit to the hard one
  const auto table = static_cast<unsigned>(std::min<rlim_t>(limit.rlim_cur, rlim_t{1} << 16));
  EXPECT_EQ(hub_->max_connections(), 2 * shard_planned_connections(table));

  hub_->stop();
  config.max_connections = 100;  // what the tables hold anyway: unchanged
  start_hub(config);
  EXPECT_EQ(hub_->max_connections(), 100U);
}

TEST_F(HubRobustnessTest, ProtocolErrorsAreCountedPerCode) {
  start_hub(test_config());
  const std::vector<Violation> all = violations();
  std::array<std::uint64_t, kErrorCodeSlots> expected{};
  for (const Violation& violation : all) {
    RelayClient offender = connect_socket();
    SCOPED_TRACE(violation.name);
    ASSERT_TRUE(offender.send_raw(violation.bytes).ok());
    ASSERT_NO_FATAL_FAILURE(expect_error_then_eof(offender, violation.code, violation.replies_before));
    ++expected[static_cast<std::size_t>(violation.code)];
  }
  EXPECT_TRUE(eventually([&] { return stats().protocol_errors == expected; }));
  EXPECT_TRUE(wait_connections(0));
}

// The scenarios below run on one shard and on two. With two, SO_REUSEPORT decides where each client
// lands, so senders and receivers often sit on different shards and the cross-shard paths (relay
// proxies, buffers released on their owner's shard) are exercised too.
class HubRobustnessShardedTest : public HubRobustnessTest, public ::testing::WithParamInterface<unsigned> {
 protected:
  HubConfig config() const { return test_config(GetParam()); }
};

std::string shard_name(const ::testing::TestParamInfo<unsigned>& info) {
  return info.param == 1 ? "OneShard" : "TwoShards";
}

INSTANTIATE_TEST_SUITE_P(Shards, HubRobustnessShardedTest, ::testing::Values(1U, 2U), shard_name);

// --- 2. Senders that vanish mid-frame.

class HubRobustnessVanishingSenderTest : public HubRobustnessShardedTest {
 protected:
  // A sender writes the first `sent` bytes of a RELAY with a 64 KiB body to `receiver`, the hub takes
  // them in, and the sender goes away (FIN, or RST if `reset`). Checks the cleanup and that nothing
  // was delivered.
  void vanish_after(std::size_t sent, bool reset) {
    constexpr std::size_t kBody = 64 * kKiB;
    start_hub(config());
    SocketPeer receiver = connect_socket_peer();
    SocketPeer bystander = connect_socket_peer();
    const HubStats idle = quiet_stats();
    const Bytes frame = join({raw_header(kRelay, 1, 0, static_cast<std::uint32_t>(protocol::kIdSize + kBody)),
                              id_bytes(receiver.id), filler(kBody)});
    const Bytes partial(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(sent));
    {
      RelayClient sender = connect_socket();
      ASSERT_TRUE(wait_connections(3));
      ASSERT_TRUE(sender.send_raw(partial).ok());
      ASSERT_TRUE(eventually([&] { return stats().bytes_in >= idle.bytes_in + partial.size(); }));
      if (partial.size() > protocol::kHeaderSize) {
        // The hub holds the partial frame (an assembly block) until the sender is gone.
        EXPECT_TRUE(eventually([&] { return stats().memory_in_use > idle.memory_in_use; }));
      }
      if (reset) {
        abort_on_close(sender.fd());
      }
    }
    EXPECT_TRUE(wait_connections(2));
    EXPECT_TRUE(wait_at_rest(idle)) << "buffer_bytes_in_use " << stats().buffer_bytes_in_use << ", idle "
                                    << idle.buffer_bytes_in_use << "; memory_in_use " << stats().memory_in_use
                                    << ", idle " << idle.memory_in_use;
    EXPECT_EQ(stats().relays, idle.relays);
    EXPECT_EQ(stats().deliveries, idle.deliveries);
    // The receiver's next delivery is the bystander's: nothing of the half frame reached it.
    expect_relay(bystander, receiver, "after the vanished sender");
    expect_relay(receiver, bystander, "both ways");
    EXPECT_EQ(stats().protocol_errors, (std::array<std::uint64_t, kErrorCodeSlots>{}));
  }
};

// Header, receiver id and 40 KiB of the body: more than one receive buffer, less than the frame.
constexpr std::size_t kMidBody = 16 + 40 * kKiB;

TEST_P(HubRobustnessVanishingSenderTest, ClosingMidBodyFreesTheAssembly) {
  vanish_after(kMidBody, false);
}

TEST_P(HubRobustnessVanishingSenderTest, ResettingMidBodyFreesTheAssembly) {
  vanish_after(kMidBody, true);
}

TEST_P(HubRobustnessVanishingSenderTest, ClosingMidHeader) {
  vanish_after(3, false);
}

INSTANTIATE_TEST_SUITE_P(Shards, HubRobustnessVanishingSenderTest, ::testing::Values(1U, 2U), shard_name);

// --- 3. Slow consumer: closed with ERROR 6 at its limit while a fast receiver keeps up.

TEST_P(HubRobustnessShardedTest, SlowConsumerIsClosedWithError6AndFastReceiverNeverStalls) {
  constexpr std::size_t kLimit = kMiB;
  constexpr std::size_t kBody = 4 * kKiB;
  constexpr std::uint64_t kRelays = 20 * kMiB / kBody;  // 20x the limit
  // The sender stays at most this many deliveries ahead of the fast reader, so the fast receiver's
  // queue (about a sixth of the limit) can never make it a slow consumer too.
  constexpr std::uint64_t kWindow = 40;
  HubConfig settings = config();
  settings.max_outbound_bytes = kLimit;
  start_hub(settings);
  SocketPeer slow = connect_socket_peer();
  SocketPeer fast = connect_socket_peer();
  SocketPeer sender = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(slow.client.fd()));
  ASSERT_NO_FATAL_FAILURE(bound_sends(sender.client.fd(), 30s));

  std::atomic<std::uint64_t> received{0};
  std::string reader_failure;
  std::string sender_failure;
  std::atomic<bool> reader_done{false};
  std::atomic<bool> sender_done{false};
  std::jthread reader([&] {
    for (std::uint64_t seq = 0; seq < kRelays; ++seq) {
      Result<Delivery> got = fast.client.next_delivery(kWait);
      if (!got.ok()) {
        reader_failure = "delivery " + std::to_string(seq) + ": " + got.error().message;
        break;
      }
      if (got->sender != sender.id || got->body.size() != kBody || codec::load_u64(got->body.data()) != seq) {
        reader_failure = "delivery " + std::to_string(seq) + " is out of order or corrupt";
        break;
      }
      received.store(seq + 1, std::memory_order_release);
    }
    reader_done = true;
  });
  std::jthread writer([&] {
    const UserId receivers[] = {slow.id, fast.id};
    Bytes body = filler(kBody);
    for (std::uint64_t seq = 0; seq < kRelays; ++seq) {
      if (!eventually([&] { return seq - received.load(std::memory_order_acquire) <= kWindow; })) {
        sender_failure = "the fast receiver stalled at " + std::to_string(received.load());
        break;
      }
      codec::store_u64(body.data(), seq);
      if (Result<void> sent = sender.client.relay(receivers, body); !sent.ok()) {
        sender_failure = "relay " + std::to_string(seq) + ": " + sent.error().message;
        break;
      }
    }
    sender_done = true;
  });

  std::uint64_t max_queued = 0;
  const auto sample = [&] {
    const HubStats s = stats();
    max_queued = std::max(max_queued, s.outbound_queued_bytes);
    return s;
  };
  // Read the slow socket as soon as the hub gives up on it: the hub waits only kErrorLinger (5 s)
  // for the client to read its ERROR frame.
  ASSERT_TRUE(eventually([&] { return sample().slow_consumer_closes == 1; }, 30s));
  std::uint64_t slow_deliveries = 0;
  for (std::uint64_t i = 0; i <= kRelays; ++i) {
    Result<Frame> frame = slow.client.read_frame(kWait);
    ASSERT_TRUE(frame.ok()) << "slow receiver, frame " << i << ": " << frame.error().message;
    if (frame->header.type != FrameType::kDeliver) {
      ASSERT_NO_FATAL_FAILURE(expect_error_frame(*frame, ErrorCode::kSlowConsumer));
      break;
    }
    // Whole frames in order up to the cut: the ERROR starts on a frame boundary.
    ASSERT_EQ(frame->payload.size(), protocol::kIdSize + kBody);
    ASSERT_EQ(codec::load_u64(frame->payload.data() + protocol::kIdSize), slow_deliveries);
    ++slow_deliveries;
    sample();
  }
  ASSERT_NO_FATAL_FAILURE(expect_eof(slow.client));
  slow.client.close();
  EXPECT_LT(slow_deliveries, kRelays);

  EXPECT_TRUE(eventually(
      [&] {
        sample();
        return reader_done && sender_done;
      },
      60s));
  reader.join();
  writer.join();
  EXPECT_EQ(reader_failure, "");
  EXPECT_EQ(sender_failure, "");
  EXPECT_EQ(received.load(), kRelays);
  EXPECT_TRUE(eventually([&] { return sample().outbound_queued_bytes == 0; }));
  EXPECT_LE(max_queued, kLimit + 8 * kMiB);
  EXPECT_TRUE(wait_connections(2));
  const HubStats s = stats();
  EXPECT_EQ(s.slow_consumer_closes, 1U);
  expect_only_error_count(ErrorCode::kSlowConsumer, 1);
  expect_relay(fast, sender, "fast is fine");
}

// --- 4. A reader that stops reading must not pin receive buffers and stall the shard, and what it
// holds costs at most one shared copy per frame (a small frame: one copy of its own, as a batch would).

TEST_P(HubRobustnessShardedTest, StalledReaderNeverPinsReceiveBuffersAndSharesAtMostOneCopyPerFrame) {
  constexpr std::size_t kBody = 200;
  constexpr std::uint64_t kRelays = 100'000;  // ~21 MB to each receiver: the pool is 16 x 32 KiB
  constexpr std::uint64_t kBatch = 1000;
  constexpr auto kLimit = 30s;
  HubConfig settings = config();
  settings.recv_buffer_count = 16;
  settings.max_outbound_bytes = 64 * kMiB;
  start_hub(settings);
  SocketPeer slow = connect_socket_peer();
  SocketPeer fast = connect_socket_peer();
  SocketPeer sender = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(slow.client.fd()));
  ASSERT_NO_FATAL_FAILURE(bound_sends(sender.client.fd(), 30s));
  const HubStats idle = quiet_stats();

  const auto until = std::chrono::steady_clock::now() + kLimit;
  std::uint64_t received = 0;
  std::string reader_failure;
  std::jthread reader([&] {
    for (; received < kRelays; ++received) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      Result<Delivery> got = fast.client.next_delivery(std::max(left, 1ms));
      if (!got.ok()) {
        reader_failure = "delivery " + std::to_string(received) + ": " + got.error().message;
        return;
      }
      if (got->body.size() != kBody || codec::load_u64(got->body.data()) != received) {
        reader_failure = "delivery " + std::to_string(received) + " is out of order or corrupt";
        return;
      }
    }
  });

  const UserId receivers[] = {slow.id, fast.id};
  Bytes body = filler(kBody);
  Bytes batch;
  for (std::uint64_t seq = 0; seq < kRelays;) {
    batch.clear();
    for (std::uint64_t end = seq + kBatch; seq < end; ++seq) {
      codec::store_u64(body.data(), seq);
      codec::append_relay(batch, receivers, body);
    }
    Result<void> sent = sender.client.send_raw(batch);
    ASSERT_TRUE(sent.ok()) << "the hub stopped reading at relay " << seq << ": " << sent.error().message;
  }
  reader.join();
  EXPECT_EQ(reader_failure, "");
  EXPECT_EQ(received, kRelays);
  const HubStats s = stats();
  // Each frame left its receive buffers as at most one copy both receivers share (copied out whole,
  // or assembled when it arrived split across two buffers), was lent while both could batch it at
  // once, or, small as it is, was copied into the queue of each receiver that could not (a batch copy).
  const std::uint64_t shared_copies =
      s.copied_out_bytes - idle.copied_out_bytes + s.copied_assembly_bytes - idle.copied_assembly_bytes;
  const std::uint64_t batched = s.batched_bytes - idle.batched_bytes;
  EXPECT_LE(shared_copies, kRelays * (protocol::kHeaderSize + 2 * protocol::kIdSize + kBody));
  // No delivery is copied twice: once into a send batch or the stalled receiver's queue, at most.
  EXPECT_LE(batched, 2 * kRelays * (protocol::kDeliverPrefixSize + kBody));
  EXPECT_EQ(s.slow_consumer_closes, 0U);

  // Closing the slow reader frees everything it held, copies included.
  slow.client.close();
  EXPECT_TRUE(wait_connections(2));
  EXPECT_TRUE(eventually([&] { return stats().outbound_queued_bytes == 0; }));
  EXPECT_TRUE(wait_at_rest(idle)) << "buffer_bytes_in_use " << stats().buffer_bytes_in_use << ", idle "
                                  << idle.buffer_bytes_in_use << "; memory_in_use " << stats().memory_in_use
                                  << ", idle " << idle.memory_in_use;
  expect_relay(sender, fast, "the pool is free again");
}

// --- 5. Server full.

TEST_P(HubRobustnessShardedTest, ConnectionPastMaxConnectionsGetsError7ThenRoomFrees) {
  HubConfig settings = config();
  settings.max_connections = 3;
  start_hub(settings);
  std::vector<SocketPeer> peers;
  for (int i = 0; i < 3; ++i) {
    peers.push_back(connect_socket_peer());
    ASSERT_NE(peers.back().id, 0U);
  }
  RelayClient refused = connect_socket();
  ASSERT_NO_FATAL_FAILURE(expect_error_then_eof(refused, ErrorCode::kServerFull));
  refused.close();
  EXPECT_TRUE(eventually([&] { return stats().server_full_rejects == 1; }));
  expect_only_error_count(ErrorCode::kServerFull, 1);
  EXPECT_EQ(stats().connections, 3U);
  expect_relay(peers[0], peers[2], "the three still work");

  peers[1].client.close();
  ASSERT_TRUE(wait_connections(2));
  SocketPeer late = connect_socket_peer();
  ASSERT_NE(late.id, 0U) << "a slot freed, yet the hub refused the next client";
  expect_relay(late, peers[0], "admitted");
  expect_relay(peers[2], late, "and reachable");
  EXPECT_EQ(stats().server_full_rejects, 1U);
  EXPECT_EQ(stats().connections, 3U);
}

// --- 6. Garbage and churn.

TEST_F(HubRobustnessTest, RandomByteFloodGetsErrorForItsFirstHeader) {
  std::mt19937_64 random(20240611);
  Bytes garbage(kMiB);
  for (std::uint8_t& byte : garbage) {
    byte = static_cast<std::uint8_t>(random());
  }
  const auto header = codec::decode_header(
      std::span<const std::uint8_t, protocol::kHeaderSize>(garbage.data(), protocol::kHeaderSize));
  const std::optional<ErrorCode> code = codec::validate_client_header(header);
  ASSERT_TRUE(code.has_value()) << "this seed starts with a valid header; pick another";

  start_hub(test_config());
  SocketPeer a = connect_socket_peer();
  SocketPeer b = connect_socket_peer();
  RelayClient flooder = connect_socket();
  ASSERT_TRUE(wait_connections(3));
  Result<void> sent = flooder.send_raw(garbage);
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  ASSERT_NO_FATAL_FAILURE(expect_error_then_eof(flooder, *code));
  flooder.close();
  EXPECT_TRUE(wait_connections(2));
  expect_only_error_count(*code, 1);
  expect_relay(a, b, "after the flood");
  expect_relay(b, a, "still fine");
}

TEST_P(HubRobustnessShardedTest, ConnectAndCloseAtOnce500TimesLeavesNoConnection) {
  constexpr std::uint64_t kCycles = 500;
  start_hub(config());
  const HubStats idle = quiet_stats();
  for (std::uint64_t i = 0; i < kCycles; ++i) {
    RelayClient c = connect_socket();
    c.close();
  }
  EXPECT_TRUE(eventually([&] { return stats().accepted == kCycles && stats().connections == 0; }))
      << "accepted " << stats().accepted << ", open " << stats().connections;
  EXPECT_TRUE(wait_at_rest(idle));
  SocketPeer a = connect_socket_peer();
  SocketPeer b = connect_socket_peer();
  EXPECT_EQ(b.id, kCycles + 2);
  expect_relay(a, b, "after the churn");
}

// --- 7. No leak across many connections.

TEST_P(HubRobustnessShardedTest, TwoThousandConnectIdentityCloseCyclesLeakNothing) {
  constexpr std::size_t kCycles = 2000;
  constexpr std::size_t kBatchSize = 100;
  start_hub(config());
  const HubStats idle = quiet_stats();
  Bytes identity_request;
  codec::append_identity_request(identity_request);
  UserId last_id = 0;
  for (std::size_t done = 0; done < kCycles; done += kBatchSize) {
    std::vector<RelayClient> batch;
    for (std::size_t i = 0; i < kBatchSize; ++i) {
      batch.push_back(connect_socket());
      if (i % 2 == 0) {
        Result<UserId> id = batch.back().identity();
        ASSERT_TRUE(id.ok()) << id.error().message;
        EXPECT_GT(*id, last_id);
        last_id = *id;
      } else {
        // Asks and leaves without reading: the reply may still be queued or in flight at the close.
        ASSERT_TRUE(batch.back().send_raw(identity_request).ok());
      }
    }
    batch.clear();
    ASSERT_TRUE(wait_connections(0)) << "after " << done + kBatchSize << " cycles";
  }
  EXPECT_TRUE(eventually([&] { return stats().accepted == kCycles; }));
  EXPECT_EQ(stats().connections, 0U);
  EXPECT_TRUE(eventually([&] { return stats().outbound_queued_bytes == 0; }));
  EXPECT_TRUE(wait_at_rest(idle)) << "buffer_bytes_in_use " << stats().buffer_bytes_in_use << ", idle "
                                  << idle.buffer_bytes_in_use << "; memory_in_use " << stats().memory_in_use
                                  << ", idle " << idle.memory_in_use;
  EXPECT_EQ(stats().protocol_errors, (std::array<std::uint64_t, kErrorCodeSlots>{}));
}

// --- Stopping with a client that got an ERROR and never closes.

// Hub::stop() flushes "for up to the shutdown grace" and closes every connection, including one that
// is draining after an ERROR (whose own deadline, kErrorLinger, is 5 s). The bound is 20x the grace.
TEST_F(HubRobustnessTest, StopIsBoundedByTheGraceEvenWithAnErroredClientThatNeverCloses) {
  HubConfig config = test_config();
  config.shutdown_grace = 100ms;
  start_hub(config);
  RelayClient offender = connect_socket();
  ASSERT_TRUE(offender.send_raw(raw_header(0x00, 0, 0, 0)).ok());
  Result<Frame> error = offender.read_frame(kWait);  // the hub now waits for our EOF, which never comes
  ASSERT_TRUE(error.ok()) << error.error().message;
  ASSERT_NO_FATAL_FAILURE(expect_error_frame(*error, ErrorCode::kUnknownType));
  const auto start = std::chrono::steady_clock::now();
  hub_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

// A stopping hub stops accepting: during its grace a new connect is refused at once, rather than
// completing its handshake into a backlog nobody accepts from until the hub exits.
TEST_F(HubRobustnessTest, ConnectsDuringTheShutdownGraceAreRefused) {
  HubConfig config = test_config();
  config.shutdown_grace = 3s;  // a client that never closes keeps the hub in its grace this long
  start_hub(config);
  RelayClient lingering = connect_socket();
  ASSERT_TRUE(wait_connections(1));
  std::jthread stopper([this] { hub_->stop(); });
  ASSERT_NO_FATAL_FAILURE(expect_eof(lingering));  // the shard has begun stopping: FIN sent, EOF awaited

  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(hub_->relay_port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int error = errno;
  ::close(fd);
  EXPECT_NE(connected, 0) << "a stopping hub completed a handshake it will never serve";
  EXPECT_EQ(error, ECONNREFUSED) << std::strerror(error);
  lingering.close();  // the hub's drain ends: stop() returns well inside the grace
}

// --- 8. The memory model: frame timeout, half-close, the memory budget's backpressure, LIST floods.

// A frame left unfinished past --frame-timeout ends its connection with ERROR 8; others carry on.
TEST_P(HubRobustnessShardedTest, UnfinishedFrameGetsError8AfterTheFrameTimeout) {
  HubConfig settings = config();
  settings.frame_timeout = 300ms;
  start_hub(settings);
  SocketPeer a = connect_socket_peer();
  SocketPeer b = connect_socket_peer();
  RelayClient slow = connect_socket();
  ASSERT_TRUE(wait_connections(3));
  const Bytes partial = join({raw_header(kRelay, 1, 0, static_cast<std::uint32_t>(protocol::kIdSize + 1000)),
                              id_bytes(a.id), filler(10)});
  ASSERT_TRUE(slow.send_raw(partial).ok());
  ASSERT_NO_FATAL_FAILURE(expect_error_then_eof(slow, ErrorCode::kFrameTimeout));
  EXPECT_EQ(stats().frame_timeouts, 1U);
  expect_only_error_count(ErrorCode::kFrameTimeout, 1);
  expect_relay(b, a, "after the timeout");
  EXPECT_EQ(stats().deliveries, 1U);  // nothing of the unfinished frame was delivered
}

// With --relay-idle-timeout-ms set, a connection that sends nothing is closed (after its queue is
// written); one that keeps talking is not.
TEST_P(HubRobustnessShardedTest, IdleTimeoutClosesOnlySilentConnections) {
  HubConfig settings = config();
  settings.relay_idle_timeout = 400ms;
  start_hub(settings);
  SocketPeer talker = connect_socket_peer();
  RelayClient silent = connect_socket();
  ASSERT_TRUE(wait_connections(2));
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {  // the talker talks more often than the timeout
    Result<UserId> id = talker.client.identity(kWait);
    ASSERT_TRUE(id.ok()) << "the talker was cut: " << id.error().message;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_NO_FATAL_FAILURE(expect_eof(silent));
  EXPECT_EQ(stats().idle_closes, 1U);
  EXPECT_TRUE(wait_connections(1));
}

// A client that half-closes right after its requests still gets every answer, then EOF: the hub stops
// reading, answers (a gathered LIST included), flushes, and only then closes.
TEST_P(HubRobustnessShardedTest, HalfClosedClientStillGetsEveryAnswer) {
  start_hub(config());
  SocketPeer other = connect_socket_peer();
  Bytes requests;
  codec::append_identity_request(requests);
  codec::append_list_request(requests);
  for (int round = 0; round < 40; ++round) {
    RelayClient client = connect_socket();
    ASSERT_TRUE(client.send_raw(requests).ok());
    ASSERT_EQ(::shutdown(client.fd(), SHUT_WR), 0) << std::strerror(errno);
    Result<Frame> identity = client.read_frame(kWait);
    ASSERT_TRUE(identity.ok()) << "round " << round << ": " << identity.error().message;
    EXPECT_EQ(identity->header.type, FrameType::kIdentityReply) << "round " << round;
    Result<Frame> list = client.read_frame(kWait);
    ASSERT_TRUE(list.ok()) << "round " << round << ": " << list.error().message;
    ASSERT_EQ(list->header.type, FrameType::kListReply) << "round " << round;
    EXPECT_EQ(list->header.length, protocol::kIdSize) << "round " << round << ": only `other` is listed";
    ASSERT_NO_FATAL_FAILURE(expect_eof(client));
  }
  EXPECT_EQ(stats().protocol_errors, (std::array<std::uint64_t, kErrorCodeSlots>{}));
}

// A half-closed client with deliveries still queued is no longer counted as connected but as closing,
// until they are written and it is closed.
TEST_P(HubRobustnessShardedTest, AHalfClosedClientIsCountedAsClosingWhileItsQueueIsWritten) {
  constexpr std::uint64_t kRelays = 12;
  start_hub(config());
  SocketPeer receiver = connect_socket_peer();
  SocketPeer sender = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(receiver.client.fd()));
  // 12 MiB in all: more than the kernel's buffers on both sides take (the hub's send buffer grows to
  // 4 MiB), so the hub holds the rest after the half-close.
  const Bytes body = filler(protocol::kMaxBodySize);
  const UserId to[] = {receiver.id};
  for (std::uint64_t i = 0; i < kRelays; ++i) {
    ASSERT_TRUE(sender.client.relay(to, body).ok());
  }
  ASSERT_TRUE(eventually([&] { return stats().deliveries == kRelays; }));  // all queued before the half-close
  ASSERT_EQ(::shutdown(receiver.client.fd(), SHUT_WR), 0) << std::strerror(errno);
  EXPECT_TRUE(eventually([&] {
    const HubStats now = stats();
    return now.connections == 1 && now.closing_connections == 1;
  })) << "connections "
      << stats().connections << ", closing " << stats().closing_connections;
  for (std::uint64_t i = 0; i < kRelays; ++i) {
    Result<Delivery> got = receiver.client.next_delivery(kWait);
    ASSERT_TRUE(got.ok()) << "delivery " << i << ": " << got.error().message;
    EXPECT_EQ(got->body.size(), body.size());
  }
  ASSERT_NO_FATAL_FAILURE(expect_eof(receiver.client));
  EXPECT_TRUE(eventually([&] { return stats().closing_connections == 0; }));
  EXPECT_EQ(stats().connections, 1U);
}

// A sender paused for memory that resets is seen at once, not once memory frees: the hub watches a
// connection it does not read for a reset, which would otherwise wait behind its unread bytes.
TEST_P(HubRobustnessShardedTest, ASenderPausedForMemoryThatResetsIsSeenAtOnce) {
  HubConfig settings = config();
  settings.max_memory = 8 * kMiB;
  settings.recv_buffer_count = 16;  // the reserve must hold twice the receive pools (512 KiB a shard)
  settings.write_deadline = 60s;    // the receiver's stall is this test's memory, not what it tests
  start_hub(settings);
  SocketPeer receiver = connect_socket_peer();  // never reads: what it is sent stays charged
  SocketPeer sender = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(receiver.client.fd()));
  ASSERT_NO_FATAL_FAILURE(bound_sends(sender.client.fd(), 1s));
  std::jthread writer([&] {  // 100 KiB frames until the hub stops reading and a send times out
    const Bytes body = filler(100 * kKiB);
    const UserId to[] = {receiver.id};
    for (int i = 0; i < 1000 && sender.client.relay(to, body).ok(); ++i) {
    }
  });
  ASSERT_TRUE(eventually([&] { return stats().read_paused_connections >= 1; }))
      << "memory_in_use " << stats().memory_in_use;
  writer.join();
  abort_on_close(sender.client.fd());
  sender.client.close();
  EXPECT_TRUE(eventually([&] {
    const HubStats now = stats();
    return now.connections == 1 && now.read_paused_connections == 0;
  })) << "connections "
      << stats().connections << ", paused " << stats().read_paused_connections;
}

// With the budget reached, the hub stops reading the sender that adds memory instead of dropping or
// disconnecting anyone. A light client is still answered meanwhile, and once the receiver reads, every
// frame arrives, in order, and the memory goes back.
TEST_P(HubRobustnessShardedTest, MemoryBudgetPausesTheHeavySenderAndLosesNothing) {
  constexpr std::size_t kBudget = 8 * kMiB;
  constexpr std::size_t kBody = 100 * kKiB;  // a heavy frame: paused first in the reserve
  constexpr std::uint64_t kRelays = 200;     // 20 MB: more than twice the budget
  HubConfig settings = config();
  settings.max_memory = kBudget;
  settings.recv_buffer_count = 16;  // the reserve must hold twice the receive pools (512 KiB a shard)
  settings.write_deadline = 60s;    // the receiver reads late on purpose (a 2 s stall would cut it)
  start_hub(settings);
  SocketPeer receiver = connect_socket_peer();
  SocketPeer sender = connect_socket_peer();
  SocketPeer light = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(receiver.client.fd()));
  ASSERT_NO_FATAL_FAILURE(bound_sends(sender.client.fd(), 30s));
  const HubStats idle = quiet_stats();

  std::string sender_failure;
  std::jthread writer([&] {
    Bytes body = filler(kBody);
    const UserId to[] = {receiver.id};
    for (std::uint64_t seq = 0; seq < kRelays; ++seq) {
      codec::store_u64(body.data(), seq);
      if (Result<void> sent = sender.client.relay(to, body); !sent.ok()) {
        sender_failure = "relay " + std::to_string(seq) + ": " + sent.error().message;
        return;
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return stats().read_paused_connections >= 1; }))
      << "memory_in_use " << stats().memory_in_use << " of " << kBudget;
  std::uint64_t peak = 0;
  for (int i = 0; i < 20; ++i) {  // the light client is served while the sender is paused
    Result<UserId> id = light.client.identity(kWait);
    ASSERT_TRUE(id.ok()) << id.error().message;
    EXPECT_EQ(*id, light.id);
    peak = std::max(peak, stats().memory_in_use);
  }
  // Within the budget, plus what was already read when the pause began (accepted bytes are kept).
  EXPECT_LE(peak, kBudget + 2 * kBody);

  for (std::uint64_t seq = 0; seq < kRelays; ++seq) {
    Result<Delivery> got = receiver.client.next_delivery(kWait);
    ASSERT_TRUE(got.ok()) << "delivery " << seq << ": " << got.error().message;
    ASSERT_EQ(got->body.size(), kBody);
    ASSERT_EQ(codec::load_u64(got->body.data()), seq) << "out of order";
  }
  writer.join();
  EXPECT_EQ(sender_failure, "");
  const HubStats s = stats();
  EXPECT_GE(s.budget_pauses, 1U);
  EXPECT_EQ(s.slow_consumer_closes, 0U);
  EXPECT_EQ(s.protocol_errors, (std::array<std::uint64_t, kErrorCodeSlots>{}));
  EXPECT_TRUE(eventually([&] { return stats().read_paused_connections == 0; }));
  EXPECT_TRUE(wait_at_rest(idle)) << "memory_in_use " << stats().memory_in_use << ", idle "
                                  << idle.memory_in_use;
}

// Clients that never read, each under its own --max-outbound-bytes, must not hold the budget, and with it
// every client, for good: the sender's frames are light (never paused as heavy), so without a write
// deadline memory reached the budget, the hub read nobody, and a client paused there never got an
// answer. Past the high watermark the stalled readers are cut with ERROR 6 and the others go on.
TEST_P(HubRobustnessShardedTest, StalledReadersPastTheHighWatermarkAreCutAndTheHubGoesOn) {
  constexpr std::size_t kBudget = 8 * kMiB;
  constexpr int kStalled = 3;
  HubConfig settings = config();
  settings.max_memory = kBudget;
  settings.recv_buffer_count = 16;  // the reserve must hold twice the receive pools (512 KiB a shard)
  settings.write_deadline = 500ms;
  start_hub(settings);
  std::vector<SocketPeer> stalled;
  stalled.reserve(kStalled);
  std::vector<UserId> ids;
  for (int i = 0; i < kStalled; ++i) {
    stalled.push_back(connect_socket_peer());
    ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(stalled.back().client.fd()));
    ids.push_back(stalled.back().id);
  }
  SocketPeer sender = connect_socket_peer();
  SocketPeer control = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(bound_sends(sender.client.fd(), 2s));
  std::jthread writer([&] {  // 16 KiB frames (light) to each, 24 MiB in all: three times the budget
    const Bytes body = filler(16 * kKiB);
    for (int i = 0; i < 512; ++i) {
      for (const UserId id : ids) {
        const UserId to[] = {id};
        if (!sender.client.relay(to, body).ok()) {
          return;  // the hub stopped reading it for a while: the cut frees the memory
        }
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return stats().slow_consumer_closes == kStalled; }))
      << "slow consumer closes " << stats().slow_consumer_closes << ", memory_in_use "
      << stats().memory_in_use << " of " << kBudget;
  writer.join();
  Result<UserId> id = control.client.identity(kWait);
  ASSERT_TRUE(id.ok()) << "the hub stopped answering: " << id.error().message;
  EXPECT_EQ(*id, control.id);
  EXPECT_TRUE(eventually([&] { return stats().memory_in_use < kBudget / 2; }))
      << "memory_in_use " << stats().memory_in_use;
  EXPECT_EQ(stats().connections, 2U);
}

TEST_F(HubRobustnessTest, BudgetTooSmallForTheReceivePoolsIsRefusedAtStart) {
  HubConfig settings = test_config(2);
  settings.max_memory = 4 * kMiB;  // 2 shards x 256 x 32 KiB of receive buffers need 128 MiB
  Result<std::unique_ptr<Hub>> started = Hub::start(settings);
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message.find("--max-memory"), std::string::npos) << started.error().message;
  EXPECT_EQ(started.error().domain, ErrorDomain::kUsage);
}

// A batch threshold above what one send batch holds is refused at start: a frame that size could never
// be batched, and its receiver's queue stalled behind it for good (probe 7).
TEST_F(HubRobustnessTest, BatchThresholdAboveOneBatchIsRefusedAtStart) {
  HubConfig settings = test_config(1);
  settings.batch_threshold = kMaxBatchThreshold + 1;
  Result<std::unique_ptr<Hub>> started = Hub::start(settings);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error().domain, ErrorDomain::kUsage);
  EXPECT_NE(started.error().message.find("--batch-threshold"), std::string::npos) << started.error().message;
}

// At the largest threshold, a delivery of exactly that size is batched and arrives, and so do the ones
// just above it (sent from their blocks) and the small one queued behind them.
TEST_F(HubRobustnessTest, TheLargestBatchThresholdDeliversEverySize) {
  HubConfig settings = test_config(1);
  settings.batch_threshold = kMaxBatchThreshold;
  start_hub(settings);
  SocketPeer sender = connect_socket_peer();
  SocketPeer receiver = connect_socket_peer();
  const std::size_t at_threshold = kMaxBatchThreshold - protocol::kDeliverPrefixSize;  // the DELIVER's size
  for (const std::size_t size :
       {at_threshold - 1, at_threshold, at_threshold + 1, std::size_t{64} << 10, std::size_t{100}}) {
    const Bytes body = filler(size);
    const UserId to[] = {receiver.id};
    ASSERT_TRUE(sender.client.relay(to, body).ok());
    Result<Delivery> got = receiver.client.next_delivery(kWait);
    ASSERT_TRUE(got.ok()) << "body of " << size << " bytes: " << got.error().message;
    EXPECT_EQ(got->body, body) << "body of " << size << " bytes";
  }
}

// Without --recv-buffers, many shards on a small budget take fewer receive buffers each instead of
// refusing to start (nine shards at the default 1 GiB did: 9 x 512 x 32 KiB, twice, passes the reserve).
TEST_F(HubRobustnessTest, DefaultReceivePoolsShrinkToFitTheBudget) {
  HubConfig settings = test_config(4);
  settings.max_memory = 64 * kMiB;  // a 16 MiB reserve: 4 shards x 64 x 32 KiB, twice
  settings.recv_buffer_count = 0;
  start_hub(settings);
  SocketPeer a = connect_socket_peer();
  SocketPeer b = connect_socket_peer();
  expect_relay(a, b, "served with smaller receive pools");

  settings.recv_buffer_count = kDefaultRecvBufferCount;  // asked for: not changed, refused
  Result<std::unique_ptr<Hub>> refused = Hub::start(settings);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("--recv-buffers"), std::string::npos) << refused.error().message;
}

// A client that pipelines LIST without reading is a slow consumer like any other: its replies count
// against --max-outbound-bytes, it gets ERROR 6, and the hub stays responsive.
TEST_P(HubRobustnessShardedTest, NonReadingListFloodIsCutAsASlowConsumer) {
  HubConfig settings = config();
  settings.max_outbound_bytes = kMiB;
  start_hub(settings);
  std::vector<SocketPeer> peers;
  peers.reserve(100);
  for (int i = 0; i < 100; ++i) {
    peers.push_back(connect_socket_peer());
  }
  RelayClient flooder = connect_socket();
  ASSERT_NO_FATAL_FAILURE(shrink_receive_buffer(flooder.fd()));
  Bytes lists;
  for (int i = 0; i < 20'000; ++i) {
    codec::append_list_request(lists);
  }
  ASSERT_TRUE(flooder.send_raw(lists).ok());
  ASSERT_TRUE(eventually([&] { return stats().slow_consumer_closes == 1; }));
  for (;;) {  // LIST replies the hub had written before the cut, then ERROR 6, then EOF
    Result<Frame> frame = flooder.read_frame(kWait);
    ASSERT_TRUE(frame.ok()) << frame.error().message;
    if (frame->header.type != FrameType::kListReply) {
      ASSERT_NO_FATAL_FAILURE(expect_error_frame(*frame, ErrorCode::kSlowConsumer));
      break;
    }
  }
  ASSERT_NO_FATAL_FAILURE(expect_eof(flooder));
  expect_relay(peers[0], peers[1], "after the flood");
}

// --- Large frames under the budget: a frame begun is read to its end, so its size is reserved first.

class HubLargeFrameReservationTest : public HubRobustnessShardedTest {
 protected:
  static constexpr std::size_t kBudget = 8 * kMiB;  // 6 MiB below the high watermark
  static constexpr int kSenders = 12;               // 12 MiB of 1 MiB frames: about half must wait
  static constexpr std::size_t kBody = kMiB;

  void start_small_hub() {
    HubConfig settings = config();
    settings.max_memory = kBudget;
    settings.recv_buffer_count = 16;  // the reserve must hold twice the receive pools
    start_hub(settings);
  }

  // Each sender writes all of a 1 MiB RELAY to `receiver` but its last byte (from a thread: the hub
  // does not read a sender whose frame waits for room).
  void send_all_but_last_byte(std::vector<RelayClient>& senders, UserId receiver) {
    Bytes frame;
    const UserId to[] = {receiver};
    codec::append_relay(frame, to, filler(kBody));
    const std::span<const std::uint8_t> head(frame.data(), frame.size() - 1);
    std::vector<std::jthread> writers;
    for (RelayClient& sender : senders) {
      ASSERT_NO_FATAL_FAILURE(bound_sends(sender.fd(), 30s));
      writers.emplace_back([&sender, head] { EXPECT_TRUE(sender.send_raw(head).ok()); });
    }
    ASSERT_TRUE(eventually([&] { return stats().read_paused_connections >= 1; }))
        << "memory_in_use " << stats().memory_in_use << " of " << kBudget;
  }

  std::vector<RelayClient> connect_senders() {
    std::vector<RelayClient> senders;
    senders.reserve(kSenders);
    for (int i = 0; i < kSenders; ++i) {
      senders.push_back(connect_socket());
    }
    return senders;
  }
};

TEST_P(HubLargeFrameReservationTest, FramesThatDoNotFitWaitWhileLightClientsAreServedAndAllArrive) {
  start_small_hub();
  SocketPeer receiver = connect_socket_peer();
  SocketPeer a = connect_socket_peer();
  SocketPeer b = connect_socket_peer();
  std::vector<RelayClient> senders = connect_senders();
  const HubStats idle = quiet_stats();
  ASSERT_NO_FATAL_FAILURE(send_all_but_last_byte(senders, receiver.id));
  std::uint64_t peak = 0;
  for (int i = 0; i < 10; ++i) {  // light traffic is served from the reserve meanwhile
    ASSERT_NO_FATAL_FAILURE(expect_relay(a, b, "while large frames wait"));
    peak = std::max(peak, stats().memory_in_use);
  }
  EXPECT_LE(peak, kBudget);
  const std::uint8_t last = filler(kBody).back();
  for (RelayClient& sender : senders) {
    ASSERT_TRUE(sender.send_raw(std::span(&last, 1)).ok());
  }
  for (int i = 0; i < kSenders; ++i) {  // every frame, waiting or not, arrives whole
    Result<Delivery> got = receiver.client.next_delivery(kWait);
    ASSERT_TRUE(got.ok()) << "delivery " << i << ": " << got.error().message;
    EXPECT_EQ(got->body, filler(kBody));
  }
  EXPECT_EQ(stats().frame_timeouts, 0U);
  EXPECT_TRUE(eventually([&] { return stats().read_paused_connections == 0; }));
  EXPECT_TRUE(wait_at_rest(idle)) << "memory_in_use " << stats().memory_in_use << ", idle "
                                  << idle.memory_in_use;
}

// Senders that give up while their frames wait are noticed once their turn comes, whatever the rest
// hold: one large frame at a time always proceeds, so waiting never deadlocks.
TEST_P(HubLargeFrameReservationTest, SendersThatCloseWhileWaitingAreAllReleased) {
  start_small_hub();
  SocketPeer receiver = connect_socket_peer();
  std::vector<RelayClient> senders = connect_senders();
  const HubStats idle = quiet_stats();
  ASSERT_NO_FATAL_FAILURE(send_all_but_last_byte(senders, receiver.id));
  senders.clear();
  EXPECT_TRUE(wait_connections(1));
  EXPECT_EQ(stats().read_paused_connections, 0U);
  EXPECT_TRUE(wait_at_rest(idle)) << "memory_in_use " << stats().memory_in_use << ", idle "
                                  << idle.memory_in_use;
  SocketPeer late = connect_socket_peer();
  ASSERT_NO_FATAL_FAILURE(expect_relay(late, receiver, "after the senders left"));
}

INSTANTIATE_TEST_SUITE_P(Shards, HubLargeFrameReservationTest, ::testing::Values(1U, 2U), shard_name);

// Cross-shard messages, LIST gathers and relay tallies are charged to the budget while they live and
// released where they end (often another shard): two identical rounds of LISTs and fan-out relays
// leave the hub charged the same to the byte, and no more than before them.
TEST_P(HubRobustnessShardedTest, CrossShardMessagesAreChargedOnlyWhileTheyLive) {
  start_hub(config());
  constexpr int kPeers = 40;
  std::vector<SocketPeer> peers;
  peers.reserve(kPeers);
  for (int i = 0; i < kPeers; ++i) {
    peers.push_back(connect_socket_peer());
  }
  std::vector<UserId> others;
  for (int i = 1; i < kPeers; ++i) {
    others.push_back(peers[i].id);
  }
  const HubStats idle = quiet_stats();
  // At rest: nothing queued, and the charge unchanged across more than two shard ticks (250 ms each),
  // so pooled send contexts have been given back.
  const auto charge_at_rest = [&] {
    std::uint64_t charge = 0;
    EXPECT_TRUE(eventually([&] {
      charge = stats().memory_in_use;
      std::this_thread::sleep_for(600ms);
      return stats().outbound_queued_bytes == 0 && stats().memory_in_use == charge;
    }));
    return charge;
  };
  const auto round = [&] {
    for (int i = 0; i < 8; ++i) {
      Result<std::vector<UserId>> listed = peers[i].client.list(kWait);
      ASSERT_TRUE(listed.ok()) << listed.error().message;
      EXPECT_EQ(listed->size(), others.size());
    }
    const Bytes body = bytes_of("to everyone else");
    ASSERT_TRUE(peers[0].client.relay(others, body).ok());
    for (int i = 1; i < kPeers; ++i) {
      Result<Delivery> got = peers[i].client.next_delivery(kWait);
      ASSERT_TRUE(got.ok()) << got.error().message;
      EXPECT_EQ(got->body, body);
    }
  };
  ASSERT_NO_FATAL_FAILURE(round());
  const std::uint64_t after_one = charge_at_rest();
  ASSERT_NO_FATAL_FAILURE(round());
  const std::uint64_t after_two = charge_at_rest();
  EXPECT_EQ(after_two, after_one);
  EXPECT_LE(after_two, idle.memory_in_use);
}

}  // namespace
}  // namespace ringhub::testing
