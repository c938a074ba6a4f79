// SocketRelayClient: blocking sockets with poll() for timeouts; frames are cut out of one receive buffer.
// See tests/transport/socket_relay_client.hpp for the contract.
#include "tests/transport/socket_relay_client.hpp"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <system_error>
#include <utility>

#include "clients/cpp/async_relay_client.hpp"
#include "clients/cpp/hub_address.hpp"
#include "core/frame_codec.hpp"
#include "transport/unique_fd.hpp"

namespace ringhub::testing {

using protocol::FrameHeader;
using protocol::FrameType;
using protocol::kHeaderSize;
using protocol::kIdSize;
using protocol::UserId;

namespace {

using detail::Deadline;
using detail::hub_error;
using detail::parse_delivery;
using detail::parse_ids;
using detail::unexpected;

// Bytes asked of one recv(): large enough that a burst of small frames costs one syscall.
constexpr std::size_t kReadChunk = std::size_t{64} << 10;

Error not_connected() {
  return system_error(EBADF, "not connected to a hub");
}

// Waits until `fd` is ready for `events`, retrying across signals with the time that is left.
Result<void> wait_for(int fd, short events, const Deadline& deadline, std::string_view awaited) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int ready = ::poll(&p, 1, deadline.poll_ms());
    if (ready > 0) {
      return {};  // an error or hangup shows up in the recv/connect result that follows
    }
    if (ready == 0) {
      return deadline.expired(awaited);
    }
    if (errno != EINTR) {
      return errno_error("poll failed");
    }
  }
}

Result<void> send_all(int fd, std::span<const std::uint8_t> bytes) {
  if (fd < 0) {
    return not_connected();
  }
  while (!bytes.empty()) {
    // MSG_NOSIGNAL: a hub that hung up must give us EPIPE to report, not kill us with SIGPIPE.
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) {
      continue;
    }
    if (sent < 0) {
      return errno_error("cannot write to hub");
    }
    bytes = bytes.subspan(static_cast<std::size_t>(sent));
  }
  return {};
}

// A blocking connect: the tests reach a hub on loopback, which answers or refuses at once.
Result<UniqueFd> connect_to(const uring::SocketAddress& address) {
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return errno_error("socket failed");
  }
  if (::connect(fd.get(), address.get(), address.length) < 0) {
    return errno_error("connect failed");
  }
  const int on = 1;  // requests are small and each answer is awaited: Nagle would hold each back
  if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0) {
    return errno_error("setsockopt(TCP_NODELAY) failed");
  }
  return fd;
}

}  // namespace

Result<SocketRelayClient> SocketRelayClient::connect(const std::string& host, std::uint16_t port,
                                                     std::chrono::milliseconds /*timeout*/) {
  Result<std::vector<uring::SocketAddress>> addresses = client::resolve_hub(host, port);
  if (!addresses) {
    return addresses.error();
  }
  Error last = system_error(EHOSTUNREACH, "no address to connect to");
  for (const uring::SocketAddress& address : *addresses) {
    Result<UniqueFd> fd = connect_to(address);
    if (fd) {
      return SocketRelayClient(fd->release());
    }
    last = fd.error();
  }
  return rephrase(last,
                  fmt::format("cannot reach hub at {}: {}", client::endpoint_text(host, port), last.message));
}

SocketRelayClient::SocketRelayClient(SocketRelayClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      rx_(std::move(other.rx_)),
      reader_(std::exchange(other.reader_, ClientFrameReader{})),
      frames_(std::move(other.frames_)),
      delivering_(std::move(other.delivering_)),
      deliveries_(std::move(other.deliveries_)) {}

SocketRelayClient& SocketRelayClient::operator=(SocketRelayClient&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    rx_ = std::move(other.rx_);
    reader_ = std::exchange(other.reader_, ClientFrameReader{});
    frames_ = std::move(other.frames_);
    delivering_ = std::move(other.delivering_);
    deliveries_ = std::move(other.deliveries_);
  }
  return *this;
}

SocketRelayClient::~SocketRelayClient() {
  close();
}

void SocketRelayClient::close() {
  if (fd_ >= 0) {
    // Linux releases the descriptor even when close() reports an error, so there is nothing to retry.
    ::close(fd_);
    fd_ = -1;
  }
  rx_.clear();
  reader_ = ClientFrameReader{};
  frames_.clear();
  delivering_ = Frame{};
}

Result<UserId> SocketRelayClient::identity(std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  std::vector<std::uint8_t> request;
  codec::append_identity_request(request);
  if (Result<void> sent = send_request(request); !sent) {
    return sent.error();
  }
  Result<Frame> reply = await_reply(FrameType::kIdentityReply, deadline);
  if (!reply) {
    return reply.error();
  }
  return codec::load_u64(reply->payload.data());
}

Result<std::vector<UserId>> SocketRelayClient::list(std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  std::vector<std::uint8_t> request;
  codec::append_list_request(request);
  if (Result<void> sent = send_request(request); !sent) {
    return sent.error();
  }
  Result<Frame> reply = await_reply(FrameType::kListReply, deadline);
  if (!reply) {
    return reply.error();
  }
  return parse_ids(*reply);
}

Result<void> SocketRelayClient::relay(std::span<const UserId> receivers, std::span<const std::uint8_t> body) {
  if (Result<void> within = client::check_relay_limits(receivers.size(), body.size()); !within) {
    return within;
  }
  std::vector<std::uint8_t> frame;
  frame.reserve(kHeaderSize + kIdSize * receivers.size() + body.size());
  codec::append_relay(frame, receivers, body);
  return send_request(frame);
}

Result<Delivery> SocketRelayClient::next_delivery(std::chrono::milliseconds timeout) {
  if (!deliveries_.empty()) {
    Delivery queued = std::move(deliveries_.front());
    deliveries_.pop_front();
    return queued;
  }
  Result<Frame> frame = read_frame_until(Deadline(timeout), "a delivery");
  if (!frame) {
    return frame.error();
  }
  switch (frame->header.type) {
    case FrameType::kDeliver: return parse_delivery(*frame);
    case FrameType::kError: return hub_error(*frame);
    default: return unexpected(*frame, "a delivery");
  }
}

Result<Frame> SocketRelayClient::read_frame(std::chrono::milliseconds timeout) {
  return read_frame_until(Deadline(timeout), "a frame");
}

Result<void> SocketRelayClient::send_raw(std::span<const std::uint8_t> bytes) {
  return send_all(fd_, bytes);
}

Result<Frame> SocketRelayClient::await_reply(FrameType type, const Deadline& deadline) {
  const std::string awaited = detail::frame_type_name(type);
  for (;;) {
    Result<Frame> frame = read_frame_until(deadline, awaited);
    if (!frame || frame->header.type == type) {
      return frame;
    }
    if (frame->header.type == FrameType::kError) {
      return hub_error(*frame);
    }
    if (frame->header.type != FrameType::kDeliver) {
      return unexpected(*frame, awaited);
    }
    queue_delivery(*frame);
  }
}

struct SocketRelayClient::FrameQueue {
  SocketRelayClient& client;

  void push(FrameType type, std::span<const std::uint8_t> first, std::span<const std::uint8_t> rest) {
    Frame frame{FrameHeader{type, 0, 0, static_cast<std::uint32_t>(first.size() + rest.size())}, {}};
    frame.payload.reserve(first.size() + rest.size());
    frame.payload.insert(frame.payload.end(), first.begin(), first.end());
    frame.payload.insert(frame.payload.end(), rest.begin(), rest.end());
    client.frames_.push_back(std::move(frame));
  }
  static std::span<const std::uint8_t> bytes_of(const UserId& id) {
    return {reinterpret_cast<const std::uint8_t*>(&id), kIdSize};  // little-endian, as on the wire
  }

  void on_identity_reply(UserId id) { push(FrameType::kIdentityReply, bytes_of(id), {}); }
  void on_list_reply(std::span<const UserId> ids) {
    push(FrameType::kListReply, {reinterpret_cast<const std::uint8_t*>(ids.data()), ids.size_bytes()}, {});
  }
  void on_deliver_begin(UserId sender, std::uint32_t size) {
    Frame& d = client.delivering_;
    d.header = FrameHeader{FrameType::kDeliver, 0, 0, static_cast<std::uint32_t>(kIdSize + size)};
    d.payload.resize(kIdSize);  // the body is appended as it arrives
    codec::store_u64(d.payload.data(), sender);
    d.payload.reserve(kIdSize + size);
  }
  void on_deliver_bytes(std::span<const std::uint8_t> bytes) {
    client.delivering_.payload.insert(client.delivering_.payload.end(), bytes.begin(), bytes.end());
  }
  void on_deliver_end() { client.frames_.push_back(std::exchange(client.delivering_, Frame{})); }
  void on_error(std::uint8_t code, std::string_view reason) {
    push(FrameType::kError, std::span<const std::uint8_t>(&code, 1),
         std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size()));
  }
};

Result<Frame> SocketRelayClient::read_frame_until(const Deadline& deadline, std::string_view awaited) {
  for (;;) {
    if (!frames_.empty()) {
      Frame frame = std::move(frames_.front());
      frames_.pop_front();
      return frame;
    }
    if (const auto error = reader_.error()) {
      return system_error(EPROTO,
                          fmt::format("hub sent a malformed frame: {}", hub_frame_error_name(*error)));
    }
    if (Result<void> got = receive_some(deadline, awaited); !got) {
      return got.error();
    }
  }
}

// Reads once and hands the bytes to the reader, which queues every frame they complete.
Result<void> SocketRelayClient::receive_some(const Deadline& deadline, std::string_view awaited) {
  if (fd_ < 0) {
    return not_connected();
  }
  if (Result<void> ready = wait_for(fd_, POLLIN, deadline, awaited); !ready) {
    return ready;
  }
  rx_.resize(kReadChunk);
  ssize_t got = 0;
  do {
    got = ::recv(fd_, rx_.data(), rx_.size(), 0);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    return errno_error("cannot read from hub");
  }
  if (got == 0) {
    return make_error("hub closed the connection");
  }
  FrameQueue queue{*this};
  (void)reader_.feed(std::span(rx_).first(static_cast<std::size_t>(got)),
                     queue);  // an error: read_frame_until
  return {};
}

void SocketRelayClient::queue_delivery(const Frame& frame) {
  deliveries_.push_back(parse_delivery(frame));
}

Result<void> SocketRelayClient::send_request(std::span<const std::uint8_t> bytes) {
  Result<void> sent = send_all(fd_, bytes);
  if (!sent) {
    return explain_send_failure(sent.error());
  }
  return {};
}

// A hub that refuses a frame sends ERROR and closes, so a later write fails with EPIPE or ECONNRESET.
// The ERROR frame, if it already arrived, says why; prefer it to the errno.
Error SocketRelayClient::explain_send_failure(Error failure) {
  const Deadline now(std::chrono::milliseconds{0});
  for (;;) {
    Result<Frame> frame = read_frame_until(now, "");
    if (!frame) {
      return failure;
    }
    if (frame->header.type == FrameType::kError) {
      return hub_error(*frame);
    }
    if (frame->header.type == FrameType::kDeliver) {
      queue_delivery(*frame);
    }
  }
}

}  // namespace ringhub::testing
