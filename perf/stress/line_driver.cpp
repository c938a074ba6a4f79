// LineDriver: the line-mode client state machine; see line_driver.hpp.
#include "perf/stress/line_driver.hpp"

#include <fmt/format.h>

#include <cstring>

namespace ringhub::stress {

LineDriver::LineDriver(uring::ClientLoop& engine, const LineSettings& settings, std::uint32_t first_client,
                       Tally& tally, std::uint64_t seed)
    : engine_(engine),
      settings_(settings),
      first_client_(first_client),
      tally_(tally),
      rng_(seed),
      clients_(engine.size()) {}

std::string LineDriver::x_of(std::uint32_t index) const {
  return fmt::format("{}-{}", settings_.nonce, first_client_ + index);
}

void LineDriver::schedule_starts(std::int64_t start_ns) {
  std::uniform_int_distribution<std::int64_t> offset(0, std::max<std::int64_t>(settings_.ramp_ns - 1, 0));
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    engine_.add_timer(uring::ClientTimer{start_ns + offset(rng_), i, 0, kStart, 0});
  }
}

void LineDriver::on_timer(const uring::ClientTimer& timer) {
  uring::ClientConn& conn = engine_.conn(timer.conn);
  Client& client = clients_[timer.conn];
  switch (timer.kind) {
    case kStart:
      tally_.note_start(uring::now_ns());
      start_attempt(conn);
      return;
    case kRetry: start_attempt(conn); return;
    case kOkDelay: {
      const std::string y = unstash(timer.arg);
      if (conn.gen == timer.gen && conn.phase == uring::ConnPhase::kOpen) {
        send_ok(conn, y);
      }
      return;
    }
    case kOkTimeout:
      if (conn.gen == timer.gen && client.state == State::kOpen && !client.got_ok) {
        client.timed_out = true;
        tally_.timeouts.fetch_add(1, std::memory_order_relaxed);
        engine_.close(conn);  // on_closed retries
      }
      return;
  }
}

void LineDriver::start_attempt(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  if (client.attempts > 0) {
    tally_.retries.fetch_add(1, std::memory_order_relaxed);
  }
  ++client.attempts;
  client.state = State::kConnecting;
  client.timed_out = false;
  engine_.connect(conn);
}

void LineDriver::on_connected(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  client.state = State::kOpen;
  if (client.attempts > 1) {
    tally_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  client.lines = std::make_unique<LineSplitter>(kDefaultMaxLineBytes);
  scratch_.clear();
  append_message_line(scratch_, x_of(conn.index));
  engine_.send(conn, scratch_);
  client.sent_ns = uring::now_ns();
  tally_.in_flight.fetch_add(1, std::memory_order_relaxed);
  engine_.add_timer(
      uring::ClientTimer{client.sent_ns + settings_.timeout_ns, conn.index, conn.gen, kOkTimeout, 0});
}

void LineDriver::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  Client& client = clients_[conn.index];
  const LineStatus status =
      client.lines->feed(bytes, [&](std::string_view line) { return on_line(conn, line); });
  if (status == LineStatus::kTooLong) {
    tally_.hub_errors += 1;
    tally_.note_failure(fmt::format("client {}: the hub sent a line over {} bytes",
                                    first_client_ + conn.index, kDefaultMaxLineBytes));
    engine_.close(conn);
  }
}

// Returns false to stop reading this buffer: the connection is closing.
bool LineDriver::on_line(uring::ClientConn& conn, std::string_view line) {
  const LineCommand command = parse_line(line);
  switch (command.verb) {
    case LineCommand::Verb::kMessage: answer(conn, command.payload); return true;
    case LineCommand::Verb::kOk:
      if (command.payload == x_of(conn.index)) {
        on_own_ok(conn);
        return false;
      }
      ++tally_.misrouted_oks;
      tally_.note_failure(fmt::format("client {}: got `ok {}`, which it never sent",
                                      first_client_ + conn.index, command.payload));
      return true;
    case LineCommand::Verb::kUnknown: break;
  }
  ++tally_.hub_errors;  // `error server full` and friends: drop the connection and try again
  tally_.note_failure(fmt::format("client {}: the hub said `{}`", first_client_ + conn.index, line));
  engine_.close(conn);
  return false;
}

void LineDriver::on_own_ok(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  if (client.got_ok) {
    ++tally_.duplicate_oks;
    return;
  }
  client.got_ok = true;
  tally_.latency.record(uring::now_ns() - client.sent_ns);
  tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  engine_.close(conn);  // the protocol's end: on_closed settles it as done
}

void LineDriver::answer(uring::ClientConn& conn, std::string_view y) {
  const std::int64_t delay = settings_.ok_delay.sample(rng_);
  if (delay == 0) {
    send_ok(conn, y);
    return;
  }
  engine_.add_timer(uring::ClientTimer{uring::now_ns() + delay, conn.index, conn.gen, kOkDelay, stash(y)});
}

void LineDriver::send_ok(uring::ClientConn& conn, std::string_view y) {
  scratch_.clear();
  append_ok_line(scratch_, y);
  engine_.send(conn, scratch_);
}

void LineDriver::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  Client& client = clients_[conn.index];
  client.lines.reset();
  if (client.got_ok) {
    tally_.last_close_ns = std::max(tally_.last_close_ns, uring::now_ns());
    settle(client, State::kDone);
    return;
  }
  if (client.state == State::kOpen) {
    tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  retry_or_give_up(conn, info);
}

void LineDriver::retry_or_give_up(uring::ClientConn& conn, const uring::CloseInfo& info) {
  Client& client = clients_[conn.index];
  if (info.was_open && !info.requested) {
    tally_.drops.fetch_add(1, std::memory_order_relaxed);
  }
  if (client.attempts > settings_.retries || engine_.aborting()) {
    const char* why = client.timed_out  ? "no ok within --timeout"
                      : info.eof        ? "the hub closed the connection"
                      : info.error != 0 ? std::strerror(info.error)
                                        : "the harness closed it";
    tally_.note_failure(fmt::format("client {}: gave up after {} attempts; last: {}",
                                    first_client_ + conn.index, client.attempts,
                                    engine_.aborting() ? "the deadline passed" : why));
    settle(client, State::kFailed);
    return;
  }
  client.state = State::kBackoff;
  engine_.add_timer(uring::ClientTimer{uring::now_ns() + backoff_ns(client.attempts, rng_), conn.index,
                                       conn.gen, kRetry, 0});
}

void LineDriver::settle(Client& client, State state) {
  client.state = state;
  ++settled_;
  (state == State::kDone ? tally_.done : tally_.failed).fetch_add(1, std::memory_order_relaxed);
}

void LineDriver::finalize() {
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    Client& client = clients_[i];
    if (client.state == State::kDone || client.state == State::kFailed) {
      continue;
    }
    if (client.state == State::kOpen) {
      tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    tally_.note_failure(fmt::format("client {}: unfinished at the deadline ({} attempts)", first_client_ + i,
                                    client.attempts));
    settle(client, State::kFailed);
  }
}

std::uint32_t LineDriver::stash(std::string_view y) {
  if (free_slots_.empty()) {
    delayed_.emplace_back(y);
    return static_cast<std::uint32_t>(delayed_.size() - 1);
  }
  const std::uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  delayed_[slot].assign(y);
  return slot;
}

std::string LineDriver::unstash(std::uint32_t slot) {
  std::string y = std::move(delayed_[slot]);
  delayed_[slot].clear();
  free_slots_.push_back(slot);
  return y;
}

}  // namespace ringhub::stress
