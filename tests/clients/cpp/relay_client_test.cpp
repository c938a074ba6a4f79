// Tests for clients/cpp/relay_client against a fake hub: a blocking socket on 127.0.0.1 port 0 whose
// scripted replies run in a thread. Ordering comes from the bytes exchanged, never from sleeps.
#include "clients/cpp/relay_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/frame_codec.hpp"
#include "tests/clients/cpp/fake_hub_socket.hpp"

namespace ringhub::client {
namespace {

using protocol::ErrorCode;
using protocol::FrameType;
using protocol::UserId;
using Bytes = std::vector<std::uint8_t>;

using client::fake_hub::bind_loopback;
using client::fake_hub::FakeHubTest;
Bytes read_exact(int fd, std::size_t n) {
  return client::fake_hub::read_exact<Bytes>(fd, n);
}
Bytes read_until_eof(int fd) {
  return client::fake_hub::read_until_eof<Bytes>(fd);
}
void write_all(int fd, const Bytes& bytes) {
  client::fake_hub::write_all(fd, bytes);
}

Bytes text(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

Bytes deliver_frame(UserId sender, std::string_view body) {
  Bytes out(protocol::kDeliverPrefixSize);
  codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(out.data(), out.size()),
                               sender, static_cast<std::uint32_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Bytes identity_request() {
  Bytes out;
  codec::append_identity_request(out);
  return out;
}

// A fake hub serving one connection. What the script saw is read after join_hub(), which orders it.
class RelayClientTest : public FakeHubTest {
 protected:
  void serve(std::function<void(int)> script) {
    hub_ = std::thread([this, script = std::move(script)] {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        script(fd);
        ::close(fd);
      }
    });
  }

  Result<RelayClient> connect() { return RelayClient::connect("127.0.0.1", port_, std::chrono::seconds{5}); }

  Bytes received_;  // written by the script, read after join_hub()
};

TEST(RelayClientConnect, ClosedPortGivesAClearError) {
  const auto [fd, port] = bind_loopback(false);
  ASSERT_GE(fd, 0);
  Result<RelayClient> client = RelayClient::connect("127.0.0.1", port);
  ::close(fd);
  ASSERT_FALSE(client);
  EXPECT_TRUE(client.error().is_system(ECONNREFUSED)) << client.error().message;
  EXPECT_EQ(client.error().message,
            "cannot reach hub at 127.0.0.1:" + std::to_string(port) + ": Connection refused");
}

TEST_F(RelayClientTest, IdentityParsesTheReply) {
  serve([this](int fd) {
    received_ = read_exact(fd, protocol::kHeaderSize);
    Bytes reply;
    codec::append_identity_reply(reply, 42);
    write_all(fd, reply);
    read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<UserId> id = client->identity();
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(*id, 42U);
  client->close();
  join_hub();
  EXPECT_EQ(received_, identity_request());
}

TEST_F(RelayClientTest, ListParsesTheIds) {
  serve([](int fd) {
    read_exact(fd, protocol::kHeaderSize);
    Bytes reply;
    const std::array<UserId, 3> ids{2, 3, 500};
    codec::append_list_reply(reply, ids);
    write_all(fd, reply);
    read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<std::vector<UserId>> ids = client->list();
  ASSERT_TRUE(ids) << ids.error().message;
  EXPECT_EQ(*ids, (std::vector<UserId>{2, 3, 500}));
}

// Replies and deliveries share the socket: a DELIVER read while awaiting a reply must not be lost.
TEST_F(RelayClientTest, DeliverBeforeTheReplyIsQueuedForNextDelivery) {
  serve([](int fd) {
    read_exact(fd, protocol::kHeaderSize);
    Bytes burst = deliver_frame(7, "hello");
    codec::append_identity_reply(burst, 3);
    const Bytes later = deliver_frame(9, "later");
    burst.insert(burst.end(), later.begin(), later.end());
    write_all(fd, burst);
    read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<UserId> id = client->identity();
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(*id, 3U);

  Result<Delivery> first = client->next_delivery(std::chrono::milliseconds{0});
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->sender, 7U);
  EXPECT_EQ(first->body, text("hello"));
  Result<Delivery> second = client->next_delivery();
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->sender, 9U);
  EXPECT_EQ(second->body, text("later"));
}

// A body far bigger than one read: the receive buffer has to grow and gather it.
TEST_F(RelayClientTest, LargeDeliveryArrivesWhole) {
  const std::string body(protocol::kMaxBodySize, 'x');
  serve([body](int fd) {
    write_all(fd, deliver_frame(5, body));
    read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<Delivery> delivery = client->next_delivery();
  ASSERT_TRUE(delivery) << delivery.error().message;
  EXPECT_EQ(delivery->sender, 5U);
  EXPECT_EQ(delivery->body, text(body));
}

TEST_F(RelayClientTest, HubErrorFrameGivesCodeAndReason) {
  serve([](int fd) {
    read_exact(fd, protocol::kHeaderSize);
    Bytes error;
    codec::append_error(error, ErrorCode::kFrameTooLarge, "body over 1 MiB");
    write_all(fd, error);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<UserId> id = client->identity();
  ASSERT_FALSE(id);
  EXPECT_TRUE(id.error().is_protocol(ErrorCode::kFrameTooLarge)) << id.error().message;
  EXPECT_EQ(id.error().message, "hub closed the connection: error 3 (frame too large): body over 1 MiB");
}

// ringhub's own reason is the code's name: said once, not twice.
TEST_F(RelayClientTest, AReasonThatIsTheCodesNameIsNotRepeated) {
  serve([](int fd) {
    read_exact(fd, protocol::kHeaderSize);
    Bytes error;
    codec::append_error(error, ErrorCode::kServerFull, protocol::error_code_name(ErrorCode::kServerFull));
    write_all(fd, error);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<UserId> id = client->identity();
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().message, "hub closed the connection: error 7 (server full)");
}

TEST_F(RelayClientTest, EofWhileWaitingSaysTheHubClosed) {
  serve([](int fd) { read_exact(fd, protocol::kHeaderSize); });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<UserId> id = client->identity();
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().message, "hub closed the connection");
}

// The fake hub never answers, so the timeout is the only way out; its length does not matter.
TEST_F(RelayClientTest, TimeoutGivesEtimedoutAndWhatWasAwaited) {
  serve([](int fd) { read_until_eof(fd); });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<UserId> id = client->identity(std::chrono::milliseconds{20});
  ASSERT_FALSE(id);
  EXPECT_TRUE(id.error().is_system(ETIMEDOUT)) << id.error().message;
  EXPECT_EQ(id.error().message, "timed out after 20 ms waiting for IDENTITY_REPLY");
  Result<Delivery> delivery = client->next_delivery(std::chrono::milliseconds{0});
  ASSERT_FALSE(delivery);
  EXPECT_TRUE(delivery.error().is_system(ETIMEDOUT)) << delivery.error().message;
  EXPECT_EQ(delivery.error().message, "timed out after 0 ms waiting for a delivery");
}

TEST_F(RelayClientTest, RelayRejectsBadCallsLocallyAndSendsGoodOnes) {
  serve([this](int fd) { received_ = read_until_eof(fd); });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  const Bytes body = text("foobar");

  Result<void> none = client->relay({}, body);
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().is_system(EINVAL)) << none.error().message;
  EXPECT_EQ(none.error().message, "a relay names 1 to 255 receivers, not 0");

  const std::vector<UserId> too_many(256, 2);
  Result<void> many = client->relay(too_many, body);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().message, "a relay names 1 to 255 receivers, not 256");

  const std::array<UserId, 2> to{2, 3};
  const Bytes too_big(protocol::kMaxBodySize + 1);
  Result<void> big = client->relay(to, too_big);
  ASSERT_FALSE(big);
  EXPECT_TRUE(big.error().is_system(EMSGSIZE)) << big.error().message;

  ASSERT_TRUE(client->relay(to, body));
  client->close();
  join_hub();
  Bytes expected;
  codec::append_relay(expected, to, body);
  EXPECT_EQ(received_, expected) << "only the valid relay reaches the wire";
}

TEST_F(RelayClientTest, OversizedFrameFromTheHubIsRefused) {
  serve([](int fd) {
    Bytes header(protocol::kHeaderSize);
    const protocol::FrameHeader huge{FrameType::kDeliver, 0, 0, kMaxHubFrameLength + 1};
    codec::encode_header(std::span<std::uint8_t, protocol::kHeaderSize>(header.data(), header.size()), huge);
    write_all(fd, header);
    read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<Delivery> delivery = client->next_delivery();
  ASSERT_FALSE(delivery);
  EXPECT_TRUE(delivery.error().is_system(EPROTO)) << delivery.error().message;
}

// core/client_frame_reader judges the hub's frames: what came before a malformed header is handed out,
// then every read says what was wrong (docs/protocol.md, "What a client refuses").
TEST_F(RelayClientTest, MalformedHubFrameGivesEprotoAfterTheFramesBeforeIt) {
  serve([](int fd) {
    Bytes frames = deliver_frame(4, "first");
    Bytes client_frame;
    codec::append_identity_request(client_frame);  // a client frame type: no hub sends it
    frames.insert(frames.end(), client_frame.begin(), client_frame.end());
    write_all(fd, frames);
    read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<Delivery> first = client->next_delivery();
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->body, text("first"));
  for (int attempt = 0; attempt < 2; ++attempt) {
    Result<Delivery> next = client->next_delivery();
    ASSERT_FALSE(next);
    EXPECT_TRUE(next.error().is_system(EPROTO)) << next.error().message;
    EXPECT_EQ(next.error().message, "hub sent a malformed frame: not a hub frame type");
  }
}

TEST_F(RelayClientTest, RawReadAndWritePassFramesThroughUntouched) {
  serve([this](int fd) {
    Bytes error;
    codec::append_error(error, ErrorCode::kNonzeroFlags, "nonzero flags");
    write_all(fd, error);
    received_ = read_until_eof(fd);
  });
  Result<RelayClient> client = connect();
  ASSERT_TRUE(client) << client.error().message;
  Result<Frame> frame = client->read_frame();
  ASSERT_TRUE(frame) << frame.error().message;
  EXPECT_EQ(frame->header.type, FrameType::kError);
  Bytes expected_payload{static_cast<std::uint8_t>(ErrorCode::kNonzeroFlags)};
  const Bytes reason = text("nonzero flags");
  expected_payload.insert(expected_payload.end(), reason.begin(), reason.end());
  EXPECT_EQ(frame->payload, expected_payload);

  const Bytes garbage{0x01, 0x00, 0x01, 0x00, 0, 0, 0, 0};
  ASSERT_TRUE(client->send_raw(garbage));
  client->close();
  EXPECT_FALSE(client->connected());
  EXPECT_TRUE(client->identity().error().is_system(EBADF)) << "a closed client refuses requests";
  join_hub();
  EXPECT_EQ(received_, garbage);
}

}  // namespace
}  // namespace ringhub::client
