// RelayClient: one AsyncRelayClient connection on its own small ring; each call queues its request,
// then runs the engine until the answer is among the frames read (or the deadline passes).
// See clients/cpp/relay_client.hpp for the contract.
#include "clients/cpp/relay_client.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <deque>
#include <optional>
#include <utility>

#include "clients/cpp/async_relay_client.hpp"
#include "clients/cpp/hub_address.hpp"
#include "clients/cpp/relay_frames.hpp"
#include "core/frame_codec.hpp"

namespace ringhub::client {

using detail::Deadline;
using protocol::FrameHeader;
using protocol::FrameType;
using protocol::kIdSize;
using protocol::UserId;

namespace {

// Receive memory of one blocking client: 8 x 16 KiB, resident from the start (tests hold thousands of
// clients). Past it the hub's sends wait in TCP until the program reads, as with a blocking socket.
constexpr unsigned kRecvBuffers = 8;
constexpr std::uint32_t kRecvBufferSize = std::uint32_t{16} << 10;

constexpr std::uint32_t kConn = 0;  // the one connection

// Frames read but not yet taken, in payload bytes, past which reading pauses while no call waits for a
// frame (relay() and send_raw()): the hub's sends then wait in TCP, as with a blocking socket that is
// not read. A call that awaits a reply reads on regardless, keeping the DELIVERs before the reply.
constexpr std::size_t kMaxBufferedBytes = std::size_t{4} << 20;

Error not_connected() {
  return system_error(EBADF, "not connected to a hub");
}

std::span<const std::uint8_t> bytes_of(const UserId& id) {
  return {reinterpret_cast<const std::uint8_t*>(&id), kIdSize};  // little-endian, as on the wire
}

}  // namespace

// The engine and what it reported: frames in wire order, the DELIVERs set aside while a reply was
// awaited, and how the connection ended.
struct RelayClient::Session final : RelayEvents {
  std::unique_ptr<AsyncRelayClient> engine;
  std::deque<Frame> frames;
  std::deque<Delivery> deliveries;
  bool opened = false;
  std::optional<Error> ended;  // set by on_closed; every later read reports it
  std::size_t buffered = 0;    // payload bytes in `frames` and `deliveries`
  bool wants_frames = false;   // a call is waiting for a frame: keep reading
  bool paused = false;         // reading paused at kMaxBufferedBytes

  void push(FrameType type, std::span<const std::uint8_t> first, std::span<const std::uint8_t> rest) {
    Frame frame{FrameHeader{type, 0, 0, static_cast<std::uint32_t>(first.size() + rest.size())}, {}};
    frame.payload.reserve(first.size() + rest.size());
    frame.payload.insert(frame.payload.end(), first.begin(), first.end());
    frame.payload.insert(frame.payload.end(), rest.begin(), rest.end());
    buffered += frame.payload.size();
    frames.push_back(std::move(frame));
    if (!wants_frames && !paused && buffered > kMaxBufferedBytes) {
      engine->pause_reading(kConn);
      paused = true;
    }
  }

  Frame pop_frame() {
    Frame frame = std::move(frames.front());
    frames.pop_front();
    buffered -= frame.payload.size();
    return frame;
  }
  // A DELIVER set aside while a reply was awaited stays counted until next_delivery() hands it out.
  void set_aside(const Frame& frame) {
    deliveries.push_back(detail::parse_delivery(frame));
    buffered += frame.payload.size();
  }
  Delivery pop_delivery() {
    Delivery delivery = std::move(deliveries.front());
    deliveries.pop_front();
    buffered -= kIdSize + delivery.body.size();
    return delivery;
  }
  void read_on() {
    if (paused) {
      engine->resume_reading(kConn);
      paused = false;
    }
  }

  void on_open(std::uint32_t /*conn*/) override { opened = true; }
  void on_identity(std::uint32_t /*conn*/, UserId id) override {
    push(FrameType::kIdentityReply, bytes_of(id), {});
  }
  void on_list(std::uint32_t /*conn*/, std::span<const UserId> ids) override {
    push(FrameType::kListReply, {reinterpret_cast<const std::uint8_t*>(ids.data()), ids.size_bytes()}, {});
  }
  void on_delivery(std::uint32_t /*conn*/, UserId sender, std::span<const std::uint8_t> body) override {
    push(FrameType::kDeliver, bytes_of(sender), body);
  }
  void on_hub_error(std::uint32_t /*conn*/, std::uint8_t code, std::string_view reason) override {
    push(FrameType::kError, std::span<const std::uint8_t>(&code, 1),
         std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size()));
  }
  void on_closed(std::uint32_t /*conn*/, const Error& why) override { ended = why; }

  // Runs the engine until `done()` or the deadline; false when the deadline came first.
  bool run(const std::function<bool()>& done, const Deadline& deadline) {
    return engine->run_until(done, deadline.left());
  }
};

Result<RelayClient> RelayClient::connect(const std::string& host, std::uint16_t port,
                                         std::chrono::milliseconds timeout) {
  Result<std::vector<uring::SocketAddress>> addresses = resolve_hub(host, port);
  if (!addresses) {
    return addresses.error();
  }
  auto session = std::make_unique<Session>();
  AsyncRelayOptions options;
  options.hubs = *addresses;
  options.connect_timeout = timeout < std::chrono::milliseconds{0} ? kLongestConnect : timeout;
  options.recv_buffers = kRecvBuffers;
  options.recv_buffer_size = kRecvBufferSize;
  options.task_run = uring::TaskRun::kAnyThread;  // the object may be handed to another thread
  Result<std::unique_ptr<AsyncRelayClient>> engine = AsyncRelayClient::create(std::move(options), *session);
  if (!engine) {
    return engine.error();
  }
  session->engine = std::move(*engine);
  const Deadline deadline(timeout);
  Error last = system_error(EHOSTUNREACH, "no address to connect to");
  for (std::uint32_t route = 0; route < addresses->size(); ++route) {
    session->ended.reset();
    session->engine->open(kConn, route);
    Session& s = *session;
    if (!s.run([&s] { return s.opened || s.ended.has_value(); }, deadline)) {
      last = system_error(ETIMEDOUT, "timed out while connecting");
      break;
    }
    if (s.opened) {
      return RelayClient(std::move(session));
    }
    last = *s.ended;
  }
  return rephrase(last, fmt::format("cannot reach hub at {}: {}", endpoint_text(host, port), last.message));
}

RelayClient::RelayClient(std::unique_ptr<Session> session) : session_(std::move(session)) {}
RelayClient::RelayClient(RelayClient&& other) noexcept = default;
RelayClient& RelayClient::operator=(RelayClient&& other) noexcept {
  if (this != &other) {
    close();
    session_ = std::move(other.session_);
  }
  return *this;
}

RelayClient::~RelayClient() {
  close();
}

bool RelayClient::connected() const {
  return session_ != nullptr && !session_->ended.has_value();
}

void RelayClient::close() {
  if (session_ == nullptr) {
    return;
  }
  Session& s = *session_;
  if (!s.ended) {
    // Bytes still queued go first; then the FIN. Bounded: a hub that stopped reading cannot hold us.
    const Deadline deadline(kDefaultTimeout);
    s.run([&s] { return s.engine->unsent_bytes(kConn) == 0 || s.engine->write_failed(kConn) || s.ended; },
          deadline);
    s.engine->close(kConn);
    s.run([&s] { return s.engine->is_idle(kConn); }, deadline);
  }
  session_.reset();  // the ring's teardown closes whatever is left
}

Result<UserId> RelayClient::identity(std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  std::vector<std::uint8_t> request;
  codec::append_identity_request(request);
  if (Result<void> sent = send_and_wait(request, deadline); !sent) {
    return sent.error();
  }
  Result<Frame> reply = await_reply(FrameType::kIdentityReply, deadline);
  if (!reply) {
    return reply.error();
  }
  return codec::load_u64(reply->payload.data());
}

Result<std::vector<UserId>> RelayClient::list(std::chrono::milliseconds timeout) {
  const Deadline deadline(timeout);
  std::vector<std::uint8_t> request;
  codec::append_list_request(request);
  if (Result<void> sent = send_and_wait(request, deadline); !sent) {
    return sent.error();
  }
  Result<Frame> reply = await_reply(FrameType::kListReply, deadline);
  if (!reply) {
    return reply.error();
  }
  return detail::parse_ids(*reply);
}

Result<void> RelayClient::relay(std::span<const UserId> receivers, std::span<const std::uint8_t> body) {
  if (session_ == nullptr) {
    return not_connected();
  }
  if (session_->ended) {
    return send_and_wait({}, Deadline(kWaitForever));  // says why the connection is gone
  }
  if (Result<void> queued = session_->engine->relay(kConn, receivers, body); !queued) {
    return queued;
  }
  return send_and_wait({}, Deadline(kWaitForever));
}

Result<Delivery> RelayClient::next_delivery(std::chrono::milliseconds timeout) {
  if (session_ != nullptr && !session_->deliveries.empty()) {
    return session_->pop_delivery();
  }
  Result<Frame> frame = read_frame_until(Deadline(timeout), "a delivery");
  if (!frame) {
    return frame.error();
  }
  switch (frame->header.type) {
    case FrameType::kDeliver: return detail::parse_delivery(*frame);
    case FrameType::kError: return detail::hub_error(*frame);
    default: return detail::unexpected(*frame, "a delivery");
  }
}

Result<Frame> RelayClient::read_frame(std::chrono::milliseconds timeout) {
  return read_frame_until(Deadline(timeout), "a frame");
}

Result<void> RelayClient::send_raw(std::span<const std::uint8_t> bytes) {
  return send_and_wait(bytes, Deadline(kWaitForever));
}

Result<Frame> RelayClient::await_reply(FrameType type, const Deadline& deadline) {
  const std::string awaited = detail::frame_type_name(type);
  for (;;) {
    Result<Frame> frame = read_frame_until(deadline, awaited);
    if (!frame || frame->header.type == type) {
      return frame;
    }
    if (frame->header.type == FrameType::kError) {
      return detail::hub_error(*frame);
    }
    if (frame->header.type != FrameType::kDeliver) {
      return detail::unexpected(*frame, awaited);
    }
    session_->set_aside(*frame);
  }
}

Result<Frame> RelayClient::read_frame_until(const Deadline& deadline, std::string_view awaited) {
  if (session_ == nullptr) {
    return not_connected();
  }
  Session& s = *session_;
  s.wants_frames = true;
  s.read_on();
  const bool got = s.run([&s] { return !s.frames.empty() || s.ended.has_value(); }, deadline);
  s.wants_frames = false;
  if (!got) {
    return deadline.expired(awaited);
  }
  if (!s.frames.empty()) {
    return s.pop_frame();
  }
  return *s.ended;
}

// Queues `frame` (when not empty) and waits until the kernel has taken every queued byte, or the
// deadline. A hub that refuses a frame sends ERROR and closes, so a write may then fail with EPIPE or
// ECONNRESET: the ERROR frame, if it came, says why; prefer it to the errno.
Result<void> RelayClient::send_and_wait(std::span<const std::uint8_t> frame, const Deadline& deadline) {
  if (session_ == nullptr) {
    return not_connected();
  }
  Session& s = *session_;
  if (!frame.empty() && !s.ended) {
    if (Result<void> queued = s.engine->send_raw(kConn, frame); !queued) {
      return queued;
    }
  }
  const auto written_or_failed = [&s] {
    return s.engine->unsent_bytes(kConn) == 0 || s.engine->write_failed(kConn) || s.ended.has_value();
  };
  if (!s.run(written_or_failed, deadline)) {
    return deadline.expired("the hub to take the request");
  }
  if (!s.ended && !s.engine->write_failed(kConn)) {
    return {};
  }
  if (!s.ended) {
    // The hub is gone; what it sent first is at most a socket buffer: read it to the close.
    s.wants_frames = true;
    s.read_on();
    const bool closed = s.run([&s] { return s.ended.has_value(); }, deadline);
    s.wants_frames = false;
    if (!closed) {
      return deadline.expired("the hub to close after a failed write");
    }
  }
  for (const Frame& queued : s.frames) {
    if (queued.header.type == FrameType::kError) {
      return detail::hub_error(queued);
    }
  }
  return *s.ended;
}

}  // namespace ringhub::client
