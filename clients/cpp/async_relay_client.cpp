// AsyncRelayClient: requests are encoded straight into the engine's send queue; received bytes go
// through core/client_frame_reader, and a DELIVER is handed out as a view of the receive buffer when it
// lies whole in one, gathered into the connection's own vector otherwise.
#include "clients/cpp/async_relay_client.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "core/frame_codec.hpp"

namespace ringhub::client {

using protocol::UserId;

namespace {

// How long the destructor waits for its closes (the ring's own teardown ends whatever is left).
constexpr std::chrono::seconds kTeardownWait{1};
Error not_connected() {
  return system_error(ENOTCONN, "not connected to a hub");
}

// A read or write on the connection failed with `error` (an errno).
Error connection_failed(int error) {
  return system_error(error,
                      fmt::format("connection to hub failed: {}", std::system_category().message(error)));
}

// Why a request cannot be sent on `slot`, if it cannot: not open, or a write already failed (the hub is
// gone, and only what it sent before is still being read).
std::optional<Error> unwritable(const uring::ClientConn& slot) {
  if (slot.phase != uring::ConnPhase::kOpen) {
    return not_connected();
  }
  if (slot.write_error != 0) {
    return connection_failed(slot.write_error);
  }
  return std::nullopt;
}

// How a connection ended, in the terms on_closed promises.
Error close_reason(const uring::CloseInfo& info) {
  if (info.requested) {
    return make_error("closed");
  }
  if (!info.was_open) {
    const int err = info.error != 0 ? info.error : ECONNREFUSED;
    return system_error(
        err, err == ETIMEDOUT ? "timed out while connecting" : std::system_category().message(err));
  }
  if (info.eof || info.error == 0) {
    return make_error("hub closed the connection");
  }
  return connection_failed(info.error);
}

}  // namespace

struct AsyncRelayClient::Connection {
  ClientFrameReader reader;
  UserId sender = 0;                    // of the DELIVER being read
  std::uint32_t body_size = 0;          // its body's size
  std::span<const std::uint8_t> whole;  // its body, when it lay whole in one receive buffer
  std::vector<std::uint8_t> gathered;   // its body otherwise
  std::optional<Error> failure;         // why this side closed it (a malformed hub frame)
  uring::CloseInfo closed;              // how it ended, once it has

  explicit Connection(std::size_t max_list_reply_length) : reader(max_list_reply_length) {}
};

// Turns the reader's reports for one connection into RelayEvents; none once the program closed it.
struct AsyncRelayClient::FrameEvents {
  AsyncRelayClient& client;
  std::uint32_t index;
  Connection& conn;

  bool open() const { return client.is_open(index); }
  bool streamed() const { return client.options_.stream_deliveries; }
  void on_identity_reply(UserId id) {
    if (open()) {
      client.events_.on_identity(index, id);
    }
  }
  void on_list_reply(std::span<const UserId> ids) {
    if (open()) {
      client.events_.on_list(index, ids);
    }
  }
  void on_deliver_begin(UserId sender, std::uint32_t size) {
    if (!open()) {
      return;
    }
    if (streamed()) {
      client.events_.on_delivery_begin(index, sender, size);
      return;
    }
    conn.sender = sender;
    conn.body_size = size;
    conn.whole = {};
    conn.gathered.clear();
  }
  void on_deliver_bytes(std::span<const std::uint8_t> bytes) {
    if (!open()) {
      return;
    }
    if (streamed()) {
      client.events_.on_delivery_bytes(index, bytes);
      return;
    }
    if (conn.gathered.empty() && conn.whole.empty() && bytes.size() == conn.body_size) {
      conn.whole = bytes;  // zero copy: the view lives until on_deliver_end, within the same feed
      return;
    }
    if (conn.gathered.empty()) {
      conn.gathered.reserve(conn.body_size);
    }
    conn.gathered.insert(conn.gathered.end(), bytes.begin(), bytes.end());
  }
  void on_deliver_end() {
    if (!open()) {
      return;
    }
    if (streamed()) {
      client.events_.on_delivery_end(index);
      return;
    }
    const std::span<const std::uint8_t> body =
        conn.whole.empty() ? std::span<const std::uint8_t>(conn.gathered) : conn.whole;
    client.events_.on_delivery(index, conn.sender, body);
    conn.whole = {};
    conn.gathered.clear();
  }
  void on_error(std::uint8_t code, std::string_view reason) {
    if (open()) {
      client.events_.on_hub_error(index, code, reason);
    }
  }
};

Result<std::unique_ptr<AsyncRelayClient>> AsyncRelayClient::create(AsyncRelayOptions options,
                                                                   RelayEvents& events) {
  if (options.connections == 0) {
    return system_error(EINVAL, "a relay client needs at least one connection");
  }
  if (options.hubs.empty()) {
    return system_error(EINVAL, "a relay client needs a hub address");
  }
  std::unique_ptr<AsyncRelayClient> client(new AsyncRelayClient(std::move(options), events));
  if (Result<void> ready = client->loop_.init(); !ready) {
    return ready.error();
  }
  client->owner_ = std::this_thread::get_id();
  return client;
}

AsyncRelayClient::AsyncRelayClient(AsyncRelayOptions options, RelayEvents& events)
    : options_(std::move(options)), events_(events), loop_([this] {
        const auto timeout =
            options_.connect_timeout > std::chrono::milliseconds{0}
                ? std::min(options_.connect_timeout, std::chrono::milliseconds(kLongestConnect))
                : std::chrono::milliseconds(kLongestConnect);
        uring::ClientLoopConfig config = loop_config(options_, options_.connections, options_.hubs,
                                                     std::chrono::nanoseconds(timeout).count());
        config.task_run = options_.task_run;
        return config;
      }()) {
  connections_.reserve(options_.connections);
  for (std::uint32_t i = 0; i < options_.connections; ++i) {
    connections_.emplace_back(options_.max_list_reply_length);
  }
  loop_.set_driver(this);
}

AsyncRelayClient::~AsyncRelayClient() {
  // Sends in flight point into the loop's buffers: let the kernel finish with them before they go.
  tearing_down_ = true;
  // Only the ring's own thread may drive it (any thread, with kAnyThread); elsewhere the ring's teardown
  // cancels what is left.
  if (options_.task_run != uring::TaskRun::kAnyThread && std::this_thread::get_id() != owner_) {
    return;
  }
  bool busy = false;
  for (std::uint32_t c = 0; c < options_.connections; ++c) {
    loop_.close(loop_.conn(c));
    busy = busy || !is_idle(c);
  }
  if (busy) {
    loop_.run_until(uring::now_ns() + std::chrono::nanoseconds(kTeardownWait).count(), [this] {
      for (std::uint32_t c = 0; c < options_.connections; ++c) {
        if (!is_idle(c)) {
          return false;
        }
      }
      return true;
    });
  }
}

void AsyncRelayClient::pause_reading(std::uint32_t conn) {
  loop_.pause_reading(loop_.conn(conn));
}

void AsyncRelayClient::resume_reading(std::uint32_t conn) {
  loop_.resume_reading(loop_.conn(conn));
}

void AsyncRelayClient::open(std::uint32_t conn, std::uint32_t route) {
  uring::ClientConn& slot = loop_.conn(conn);
  if (slot.phase != uring::ConnPhase::kIdle || stopping()) {
    return;  // ignored: the last close_info() and mid_frame() stay readable
  }
  connections_[conn] = Connection(options_.max_list_reply_length);
  loop_.connect(slot, route);
}

void AsyncRelayClient::close(std::uint32_t conn) {
  loop_.close(loop_.conn(conn));
}

bool AsyncRelayClient::is_open(std::uint32_t conn) const {
  return loop_.conn(conn).phase == uring::ConnPhase::kOpen;
}

bool AsyncRelayClient::is_idle(std::uint32_t conn) const {
  return loop_.conn(conn).phase == uring::ConnPhase::kIdle;
}

std::size_t AsyncRelayClient::unsent_bytes(std::uint32_t conn) const {
  return uring::ClientLoop::unsent_bytes(loop_.conn(conn));
}

bool AsyncRelayClient::write_failed(std::uint32_t conn) const {
  return loop_.conn(conn).write_error != 0;
}

Result<void> AsyncRelayClient::queue(std::uint32_t conn, std::span<const std::uint8_t> bytes) {
  uring::ClientConn& slot = loop_.conn(conn);
  if (std::optional<Error> why = unwritable(slot)) {
    return *why;
  }
  std::vector<std::uint8_t>& out = loop_.out(slot);
  out.insert(out.end(), bytes.begin(), bytes.end());
  loop_.flush(slot);
  return {};
}

Result<void> AsyncRelayClient::identity(std::uint32_t conn) {
  std::vector<std::uint8_t> request;
  codec::append_identity_request(request);
  return queue(conn, request);
}

Result<void> AsyncRelayClient::list(std::uint32_t conn) {
  std::vector<std::uint8_t> request;
  codec::append_list_request(request);
  return queue(conn, request);
}

Result<void> AsyncRelayClient::relay(std::uint32_t conn, std::span<const UserId> receivers,
                                     std::span<const std::uint8_t> body) {
  if (Result<void> within = check_relay_limits(receivers.size(), body.size()); !within) {
    return within;
  }
  uring::ClientConn& slot = loop_.conn(conn);
  if (std::optional<Error> why = unwritable(slot)) {
    return *why;
  }
  codec::append_relay(loop_.out(slot), receivers, body);  // encoded in place: no frame copy
  loop_.flush(slot);
  return {};
}

Result<void> AsyncRelayClient::send_raw(std::uint32_t conn, std::span<const std::uint8_t> bytes) {
  return queue(conn, bytes);
}

Result<std::span<std::uint8_t>> AsyncRelayClient::relay_in_place(std::uint32_t conn,
                                                                 std::span<const UserId> receivers,
                                                                 std::size_t body_size) {
  if (Result<void> within = check_relay_limits(receivers.size(), body_size); !within) {
    return within.error();
  }
  uring::ClientConn& slot = loop_.conn(conn);
  if (std::optional<Error> why = unwritable(slot)) {
    return *why;
  }
  std::vector<std::uint8_t>& out = loop_.out(slot);
  const std::size_t frame_start = out.size();
  const std::size_t ids_size = protocol::kIdSize * receivers.size();
  out.resize(frame_start + protocol::kHeaderSize + ids_size + body_size);
  std::uint8_t* frame = out.data() + frame_start;
  const protocol::FrameHeader header{protocol::FrameType::kRelay, static_cast<std::uint8_t>(receivers.size()),
                                     0, static_cast<std::uint32_t>(ids_size + body_size)};
  codec::encode_header(std::span<std::uint8_t, protocol::kHeaderSize>(frame, protocol::kHeaderSize), header);
  for (std::size_t k = 0; k < receivers.size(); ++k) {
    codec::store_u64(frame + protocol::kHeaderSize + protocol::kIdSize * k, receivers[k]);
  }
  loop_.flush(slot);
  return std::span<std::uint8_t>(frame + protocol::kHeaderSize + ids_size, body_size);
}

void AsyncRelayClient::add_timer(std::uint32_t conn, std::int64_t at_ns, std::uint32_t kind) {
  loop_.add_timer(uring::ClientTimer{at_ns, conn, 0, kind, 0});
}

const uring::CloseInfo& AsyncRelayClient::close_info(std::uint32_t conn) const {
  return connections_[conn].closed;
}

bool AsyncRelayClient::mid_frame(std::uint32_t conn) const {
  return !connections_[conn].reader.at_boundary();
}

void AsyncRelayClient::run(std::int64_t deadline_ns, const std::atomic<bool>& abort,
                           const std::function<bool()>& finished) {
  finished_ = finished;
  loop_.run(deadline_ns, abort);
  finished_ = nullptr;
}

bool AsyncRelayClient::run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const std::int64_t deadline =
      timeout.count() < 0 ? -1 : uring::now_ns() + std::chrono::nanoseconds(timeout).count();
  return loop_.run_until(deadline, done);
}

void AsyncRelayClient::on_connected(uring::ClientConn& conn) {
  if (tearing_down_) {
    loop_.close(conn);
    return;
  }
  events_.on_open(conn.index);
}

void AsyncRelayClient::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  Connection& state = connections_[conn.index];
  if (tearing_down_) {
    return;
  }
  events_.on_read(conn.index, bytes.size());
  if (state.failure || !is_open(conn.index)) {
    return;  // closing: the stream cannot be read past a malformed frame, nor after close()
  }
  FrameEvents frame_events{*this, conn.index, state};
  // A malformed frame after the program's own close() changes nothing: that close is what on_closed says.
  if (const auto error = state.reader.feed(bytes, frame_events); error && is_open(conn.index)) {
    state.failure =
        system_error(EPROTO, fmt::format("hub sent a malformed frame: {}", hub_frame_error_name(*error)));
    loop_.close(conn);
  }
}

void AsyncRelayClient::on_drained(uring::ClientConn& conn) {
  if (!tearing_down_) {
    events_.on_sent(conn.index);
  }
}

void AsyncRelayClient::on_timer(const uring::ClientTimer& timer) {
  if (!tearing_down_) {
    events_.on_timer(timer.conn, timer.kind);
  }
}

void AsyncRelayClient::on_iteration() {
  if (!tearing_down_) {
    events_.on_iteration();
  }
}

void AsyncRelayClient::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  Connection& state = connections_[conn.index];
  state.closed = info;
  const Error why = state.failure ? *state.failure : close_reason(info);
  state.failure.reset();
  if (!tearing_down_) {
    events_.on_closed(conn.index, why);
  }
}

Result<void> check_relay_limits(std::size_t receivers, std::size_t body_size) {
  if (receivers == 0 || receivers > protocol::kMaxReceivers) {
    return system_error(
        EINVAL, fmt::format("a relay names 1 to {} receivers, not {}", protocol::kMaxReceivers, receivers));
  }
  if (body_size > protocol::kMaxBodySize) {
    return system_error(EMSGSIZE, fmt::format("a relay body holds at most {} bytes, not {}",
                                              protocol::kMaxBodySize, body_size));
  }
  return {};
}

std::string printable_reason(std::string_view reason) {
  std::string text(reason);
  const auto unprintable = [](char c) { return c < 0x20 || c > 0x7e; };  // char is signed: >= 0x80 too
  std::replace_if(text.begin(), text.end(), unprintable, '?');
  return text;
}

}  // namespace ringhub::client
