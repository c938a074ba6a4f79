// RelayClient: a blocking client for the relay protocol (docs/protocol.md), used by the ringhub-client
// CLI and by tests: a thin wrapper over AsyncRelayClient. One connection to a hub; every wait that takes
// a timeout is bounded by it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
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

// Contract: owns one connection and closes it on destruction; move-only; used by one thread at a time
// (it may move between threads). A thin blocking wrapper over AsyncRelayClient (one connection on its
// own small ring): every call runs the engine until its answer comes or its timeout passes.
// Replies come back in request order, but DELIVERs may arrive between them: a call waiting for a
// reply queues the DELIVERs it reads, and next_delivery() hands them out first. One call sets aside at
// most what the hub queued for us before its reply (bounded by the hub's --max-outbound-bytes, 64 MiB
// by default) plus the sockets' buffers; set-aside DELIVERs add up across calls until taken.
// While no call waits for a frame (relay(), send_raw()), reading stops once 4 MiB of frames wait to be
// taken, so a program that only sends leaves the hub's DELIVERs in TCP rather than in its own memory.
//
// Errors: a hub ERROR frame gives a kProtocol error with its ErrorCode; a timeout gives ETIMEDOUT; a
// frame the hub should never send, or one core/client_frame_reader finds malformed, gives EPROTO (and
// every later read gives it again); failed reads and writes give their errno (all kSystem); EOF gives
// a kNone error; any call after close() gives EBADF.
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

  // Sends one RELAY and waits until the kernel has taken all of it (a hub that stops reading makes this
  // wait, as a blocking write would). Checks the limits the hub would enforce first, so a bad call fails
  // here with a clear message instead of costing the connection. The hub sends no acknowledgement.
  Result<void> relay(std::span<const protocol::UserId> receivers, std::span<const std::uint8_t> body);

  // The next DELIVER: a queued one if any, else the next one read.
  Result<Delivery> next_delivery(std::chrono::milliseconds timeout = kDefaultTimeout);

  // The next frame on the wire, whatever its type, bypassing the delivery queue (for tests).
  Result<Frame> read_frame(std::chrono::milliseconds timeout = kDefaultTimeout);

  // Writes `bytes` as they are, framed or not (for tests of malformed input), and waits as relay() does.
  Result<void> send_raw(std::span<const std::uint8_t> bytes);

  bool connected() const;
  // Closes the connection once what was written has been handed to the kernel (bounded by
  // kDefaultTimeout), then releases the ring.
  void close();

 private:
  struct Session;  // the engine, its one connection, and the frames read but not yet returned

  explicit RelayClient(std::unique_ptr<Session> session);

  Result<Frame> await_reply(protocol::FrameType type, const detail::Deadline& deadline);
  Result<Frame> read_frame_until(const detail::Deadline& deadline, std::string_view awaited);
  Result<void> send_and_wait(std::span<const std::uint8_t> frame, const detail::Deadline& deadline);

  std::unique_ptr<Session> session_;
};

}  // namespace ringhub::client
