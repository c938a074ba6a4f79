// SocketRelayClient: the hub tests' plain-socket relay client (blocking sockets on poll()), for tests
// that reach under the protocol: shrink a receive buffer, bound a blocking write, shut down one
// direction, read the raw stream. Everything else uses the client library (clients/cpp/relay_client.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "clients/cpp/relay_client.hpp"
#include "clients/cpp/relay_frames.hpp"
#include "core/client_frame_reader.hpp"
#include "core/protocol.hpp"
#include "core/result.hpp"

namespace ringhub::testing {

using client::Delivery;
using client::Frame;
using client::kDefaultTimeout;
namespace detail = client::detail;

// Contract: owns one connected socket and closes it on destruction; move-only; used by one thread.
// Replies come back in request order, but DELIVERs may arrive between them: a call waiting for a
// reply queues the DELIVERs it reads, and next_delivery() hands them out first.
//
// Errors: a hub ERROR frame gives a kProtocol error with its ErrorCode; a timeout gives ETIMEDOUT; a
// frame the hub should never send, or one core/client_frame_reader finds malformed, gives EPROTO; failed
// syscalls give their errno (all kSystem); EOF gives a kNone error.
class SocketRelayClient {
 public:
  // Resolves `host` (name or IPv4/IPv6 literal) and connects to the first address that answers, with a
  // blocking connect (loopback answers at once): `timeout` is not used.
  static Result<SocketRelayClient> connect(const std::string& host, std::uint16_t port,
                                           std::chrono::milliseconds timeout = kDefaultTimeout);

  SocketRelayClient(SocketRelayClient&& other) noexcept;
  SocketRelayClient& operator=(SocketRelayClient&& other) noexcept;
  SocketRelayClient(const SocketRelayClient&) = delete;
  SocketRelayClient& operator=(const SocketRelayClient&) = delete;
  ~SocketRelayClient();

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
  explicit SocketRelayClient(int fd) : fd_(fd) {}

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

}  // namespace ringhub::testing
