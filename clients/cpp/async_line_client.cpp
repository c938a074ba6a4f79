// AsyncLineClient: carries each LineSession's requests to the engine (connect, send, close, timers) and
// the engine's events back to it; the one rule it adds is the hub's addresses (a failed connect tries
// the next one within the same attempt). See async_line_client.hpp.
#include "clients/cpp/async_line_client.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <utility>

namespace ringhub::client {

namespace {

Error stopped_error(const LineSession& session) {
  return make_error("stopped before `ok X` came (" + attempts_text(session.counts().attempts) + " made)");
}

std::uint64_t seed_of(const AsyncLineOptions& options) {
  if (options.seed != 0) {
    return options.seed;
  }
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
         (static_cast<std::uint64_t>(::getpid()) << 20U) ^ options.loop_index;
}

}  // namespace

Result<std::unique_ptr<AsyncLineClient>> AsyncLineClient::create(AsyncLineOptions options,
                                                                 LineEvents& events) {
  if (options.clients == 0) {
    return system_error(EINVAL, "a line client needs at least one client slot");
  }
  if (options.hubs.empty()) {
    return system_error(EINVAL, "a line client needs a hub address");
  }
  if (options.session.max_attempts == 0) {
    return system_error(EINVAL, "max_attempts is 0: there must be at least one attempt");
  }
  std::unique_ptr<AsyncLineClient> client(new AsyncLineClient(std::move(options), events));
  if (Result<void> ready = client->loop_.init(); !ready) {
    return ready.error();
  }
  client->owner_ = std::this_thread::get_id();
  return client;
}

AsyncLineClient::AsyncLineClient(AsyncLineOptions options, LineEvents& events)
    : options_(std::move(options)),
      events_(events),
      loop_(loop_config(options_, options_.clients, options_.hubs, options_.connect_timeout_ns)),
      sessions_(options_.clients),
      rng_(seed_of(options_)) {
  loop_.set_driver(this);
}

AsyncLineClient::~AsyncLineClient() {
  // Sends in flight point into the loop's buffers: let the kernel finish with them before they go. No
  // event is delivered from here.
  tearing_down_ = true;
  bool busy = false;
  for (std::uint32_t c = 0; c < size(); ++c) {
    busy = busy || !idle(c);
  }
  // Only the ring's own thread may drive it; elsewhere the ring's teardown cancels what is left.
  if (busy && std::this_thread::get_id() == owner_) {
    const std::atomic<bool> stop{true};
    loop_.run(uring::now_ns(), stop);
  }
}

void AsyncLineClient::start(std::uint32_t client, std::string x, std::int64_t at_ns) {
  Slot& slot = sessions_[client];
  if (slot.session) {
    return;
  }
  slot.session.emplace(options_.session, static_cast<LineSessionIo&>(*this), client, std::move(x));
  ++started_;
  loop_.add_timer(uring::ClientTimer{at_ns, client, 0, kStart, 0});
}

void AsyncLineClient::give_up(std::uint32_t client, Error why) {
  LineSession* session = sessions_[client].session ? &*sessions_[client].session : nullptr;
  if (session == nullptr || session->settled()) {
    return;
  }
  session->give_up(std::move(why));
  loop_.close(loop_.conn(client));
}

const LineSession* AsyncLineClient::session(std::uint32_t client) const {
  return sessions_[client].session ? &*sessions_[client].session : nullptr;
}

bool AsyncLineClient::idle(std::uint32_t client) const {
  return loop_.conn(client).phase == uring::ConnPhase::kIdle;
}

void AsyncLineClient::run(std::int64_t deadline_ns, const std::atomic<bool>& abort) {
  loop_.run(deadline_ns, abort);
  for (std::uint32_t c = 0; c < size(); ++c) {
    if (const LineSession* s = session(c)) {
      give_up(c, stopped_error(*s));
    }
  }
}

bool AsyncLineClient::run_until(std::int64_t deadline_ns, const std::function<bool()>& done) {
  return loop_.run_until(deadline_ns, done);
}

// --- the engine's events, to the sessions

void AsyncLineClient::on_timer(const uring::ClientTimer& timer) {
  if (tearing_down_) {
    return;
  }
  LineSession& session = *sessions_[timer.conn].session;
  if (timer.kind == kStart) {
    session.start();
    return;
  }
  const auto kind = static_cast<LineTimer>(timer.kind - 1);
  const uring::ClientConn& conn = loop_.conn(timer.conn);
  if (kind != LineTimer::kRetry && (timer.gen != conn.gen || conn.phase != uring::ConnPhase::kOpen)) {
    return;  // armed for a connection that is gone
  }
  session.on_timer(kind, uring::now_ns());
}

void AsyncLineClient::on_connected(uring::ClientConn& conn) {
  if (tearing_down_) {
    loop_.close(conn);
    return;
  }
  events_.on_connected(conn.index);
  sessions_[conn.index].session->on_connected(uring::now_ns());
}

void AsyncLineClient::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  if (tearing_down_) {
    return;
  }
  LineSession& session = *sessions_[conn.index].session;
  const bool had_ok = session.got_ok();
  session.on_bytes(bytes, uring::now_ns());
  if (!had_ok && session.got_ok()) {
    events_.on_answered(conn.index);
  }
}

void AsyncLineClient::on_drained(uring::ClientConn& conn) {
  if (tearing_down_) {
    return;
  }
  sessions_[conn.index].session->on_drained(uring::now_ns());
}

void AsyncLineClient::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  if (tearing_down_) {
    return;
  }
  Slot& slot = sessions_[conn.index];
  LineSession& session = *slot.session;
  if (!info.was_open && !session.settled() && !loop_.aborting()) {
    const std::int64_t left_ns = slot.connect_deadline_ns - uring::now_ns();
    if (slot.route + 1 - slot.first_route < options_.hubs.size() && left_ns > 0) {
      loop_.connect(conn, ++slot.route, left_ns);  // the next address, within the same attempt
      return;
    }
  }
  events_.on_closed(conn.index, info);
  if (loop_.aborting() && !session.got_ok()) {
    give_up(conn.index, stopped_error(session));
    return;
  }
  session.on_closed(LineConnectionEnd{info.was_open, info.eof, info.error});
}

// --- the sessions' requests, to the engine

void AsyncLineClient::connect(std::uint32_t tag) {
  Slot& slot = sessions_[tag];
  slot.first_route = options_.start_at == AsyncLineOptions::Start::kSpread ? route_cursor_++ : 0;
  slot.route = slot.first_route;
  slot.connect_deadline_ns = uring::now_ns() + options_.connect_timeout_ns;
  loop_.connect(loop_.conn(tag), slot.route);
  events_.on_attempt(tag, slot.session->counts().attempts);  // after: it may give the client up
}

void AsyncLineClient::send(std::uint32_t tag, std::string_view bytes) {
  loop_.send(loop_.conn(tag), bytes);
}

void AsyncLineClient::close(std::uint32_t tag) {
  loop_.close(loop_.conn(tag));
}

void AsyncLineClient::arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) {
  loop_.add_timer(uring::ClientTimer{uring::now_ns() + delay_ns, tag, loop_.conn(tag).gen,
                                     static_cast<std::uint32_t>(timer) + 1, 0});
}

std::size_t AsyncLineClient::unsent_bytes(std::uint32_t tag) const {
  return uring::ClientLoop::unsent_bytes(loop_.conn(tag));
}

std::uint64_t AsyncLineClient::random(std::uint32_t tag) {
  (void)tag;
  return rng_();
}

void AsyncLineClient::settled(std::uint32_t tag) {
  ++settled_;
  events_.on_settled(tag);
}

}  // namespace ringhub::client
