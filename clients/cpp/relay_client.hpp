// RelayClient: a blocking client for the relay protocol (docs/protocol.md), used by the
// ringhub-client CLI and by tests. One TCP connection to a hub; every wait is bounded by a timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/client_frame_reader.hpp"
#include "core/protocol.hpp"
#include "core/result.hpp"

namespace ringhub::client {

namespace detail {
class Deadline;  // when a wait must end; defined in relay_client.cpp
}  // namespace detail

// How long connect() and the request calls wait by default.
inline constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::seconds{5};

// A negative timeout waits without limit: a listener has no reason to give up on deliveries.
inline constexpr std::chrono::milliseconds kWaitForever{-1};

// Largest LIST_REPLY length accepted from a hub (64 MiB), the client frame reader's default. Other hub
// frames have the protocol's own limits (1 MiB DELIVER body, 200-byte ERROR reason).
inline constexpr std::size_t kMaxHubFrameLength = kDefaultMaxListReplyLength;

// One frame as it came off the wire: the header and the `header.length` bytes after it.
struct Frame {
  protocol::FrameHeader header;
  std::vector<std::uint8_t> payload;
};

// A body another client relayed to us.
struct Delivery {
  protocol::UserId sender = 0;
  std::vector<std::uint8_t> body;
};

// Contract: owns one connected socket and closes it on destruction; move-only; used by one thread.
// Replies come back in request order, but DELIVERs may arrive between them: a call waiting for a
// reply queues the DELIVERs it reads, and next_delivery() hands them out first.
//
// Errors: a hub ERROR frame gives a kProtocol error with its ErrorCode; a timeout gives ETIMEDOUT; a
// frame the hub should never send, or one core/client_frame_reader finds malformed, gives EPROTO; failed
// syscalls give their errno (all kSystem); EOF gives a kNone error.
class RelayClient {
 public:
  // Resolves `host` (name or IPv4/IPv6 literal) and connects to the first address that answers.
  static Result<RelayClient> connect(const std::string& host, std::uint16_t port,
                                     std::chrono::milliseconds timeout = kDefaultTimeout);

  RelayClient(RelayClient&& other) noexcept;
  RelayClient& operator=(RelayClient&& other) noexcept;
  RelayClient(const RelayClient&) = delete;
  RelayClient& operator=(const RelayClient&) = delete;
  ~RelayClient();

  // Sends IDENTITY and waits for IDENTITY_REPLY: this connection's id.
  Result<protocol::UserId> identity(std::chrono::milliseconds timeout = kDefaultTimeout);

  // Sends LIST and waits for LIST_REPLY: every other connected client, ascending.
  Result<std::vector<protocol::UserId>> list(std::chrono::milliseconds timeout = kDefaultTimeout);

  // Sends one RELAY. Checks the limits the hub would enforce first, so a bad call fails here with a
  // clear message instead of costing the connection. The hub sends no acknowledgement.
  Result<void> relay(std::span<const protocol::UserId> receivers, std::span<const std::uint8_t> body);

  // The next DELIVER: a queued one if any, else the next read from the socket.
  Result<Delivery> next_delivery(std::chrono::milliseconds timeout = kDefaultTimeout);

  // The next frame on the wire, whatever its type, bypassing the delivery queue (for tests).
  Result<Frame> read_frame(std::chrono::milliseconds timeout = kDefaultTimeout);

  // Writes `bytes` as they are, framed or not (for tests of malformed input).
  Result<void> send_raw(std::span<const std::uint8_t> bytes);

  int fd() const { return fd_; }
  void close();

 private:
  explicit RelayClient(int fd) : fd_(fd) {}

  // Queues the frames the reader reports as whole Frames (a DELIVER once its last byte came).
  struct FrameQueue;

  Result<Frame> await_reply(protocol::FrameType type, const detail::Deadline& deadline);
  Result<Frame> read_frame_until(const detail::Deadline& deadline, std::string_view awaited);
  Result<void> receive_some(const detail::Deadline& deadline, std::string_view awaited);
  void queue_delivery(const Frame& frame);
  Result<void> send_request(std::span<const std::uint8_t> bytes);
  Error explain_send_failure(Error failure);

  int fd_ = -1;
  std::vector<std::uint8_t> rx_;  // one recv()'s bytes, handed to reader_ at once
  ClientFrameReader reader_;
  std::deque<Frame> frames_;  // whole frames read and not yet returned
  Frame delivering_;          // the DELIVER whose body is still arriving
  std::deque<Delivery> deliveries_;
};

}  // namespace ringhub::client
