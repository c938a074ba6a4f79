// IdleDriver: bounded connect pipeline, greeting confirmation and the close on main's signal.
#include "perf/loadgen/idle_driver.hpp"

#include <fmt/format.h>

#include <cstring>

namespace ringhub::perf {

namespace {
constexpr std::size_t kMaxErrorsKept = 5;
}

IdleDriver::IdleDriver(uring::ClientLoop& engine, Target target, std::uint32_t max_connecting,
                       IdleShared& shared)
    : engine_(engine),
      target_(target),
      max_connecting_(max_connecting),
      shared_(shared),
      confirmed_(engine.size(), 0) {
  parsers_.reserve(engine.size());
  for (std::uint32_t i = 0; i < engine.size(); ++i) {
    parsers_.push_back(make_parser(target, i));
  }
}

void IdleDriver::start() {
  connect_more();
}

// Opening every socket at once would overflow the server's accept queue (SYN retries then cost a
// second each), so at most max_connecting_ are between connect and the greeting's answer.
void IdleDriver::connect_more() {
  while (!closing_ && connecting_ < max_connecting_ && next_ < engine_.size()) {
    ++connecting_;
    engine_.connect(engine_.conn(next_++));
  }
}

void IdleDriver::on_connected(uring::ClientConn& conn) {
  append_greeting(target_, Role::kIdle, 0, engine_.out(conn));
  engine_.flush(conn);
}

void IdleDriver::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  parsers_[conn.index]->feed(bytes, *this);
}

void IdleDriver::on_ready(std::uint32_t conn, std::uint64_t id) {
  (void)id;
  if (confirmed_[conn] != 0) {
    return;
  }
  confirmed_[conn] = 1;
  --connecting_;
  shared_.confirmed.fetch_add(1, std::memory_order_relaxed);
  shared_.last_confirm_ns.store(uring::now_ns(), std::memory_order_relaxed);
  connect_more();
}

void IdleDriver::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  if (info.requested) {
    return;
  }
  if (confirmed_[conn.index] == 0) {
    --connecting_;
  }
  shared_.failed.fetch_add(1, std::memory_order_relaxed);
  record_failure(info.was_open
                     ? fmt::format("closed by the server ({})", info.eof ? "EOF" : std::strerror(info.error))
                     : fmt::format("connect failed: {}", std::strerror(info.error)));
  connect_more();
}

void IdleDriver::on_iteration() {
  if (!closing_ && shared_.close_now.load(std::memory_order_relaxed)) {
    closing_ = true;
    for (std::uint32_t i = 0; i < engine_.size(); ++i) {
      engine_.close(engine_.conn(i));
    }
  }
}

void IdleDriver::on_message_begin(std::uint32_t conn, std::uint64_t origin, std::size_t size) {
  (void)origin;
  (void)size;
  on_protocol_error(conn, "an idle connection received a message");
}

void IdleDriver::on_message_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) {
  (void)conn;
  (void)bytes;
}

void IdleDriver::on_publish_ack(std::uint32_t conn, std::int64_t receivers) {
  (void)conn;
  (void)receivers;
}

void IdleDriver::on_reply(std::uint32_t conn, std::string_view bytes) {
  engine_.send(engine_.conn(conn), bytes);
}

void IdleDriver::on_protocol_error(std::uint32_t conn, std::string_view what) {
  record_failure(fmt::format("connection {}: {}", conn, what));
}

void IdleDriver::record_failure(std::string what) {
  const std::lock_guard lock(shared_.errors_mutex);
  if (shared_.errors.size() < kMaxErrorsKept) {
    shared_.errors.push_back(std::move(what));
  }
}

}  // namespace ringhub::perf
