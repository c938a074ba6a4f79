// LineDriver: the engine side of --mode line's sessions, and the run's counts; see line_driver.hpp.
#include "perf/stress/line_driver.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ringhub::stress {

namespace {

LineSessionConfig session_config(const LineSettings& settings) {
  LineSessionConfig config;
  config.ok_timeout_ns = settings.timeout_ns;
  config.max_attempts = settings.retries + 1;
  config.endpoint = settings.endpoint;
  return config;
}

std::uint32_t timer_kind(LineTimer timer) {
  return static_cast<std::uint32_t>(timer) + 1;
}

}  // namespace

LineDriver::LineDriver(uring::ClientLoop& engine, const LineSettings& settings, std::uint32_t first_client,
                       Tally& tally, std::uint64_t seed)
    : engine_(engine),
      settings_(settings),
      config_(session_config(settings)),
      first_client_(first_client),
      tally_(tally),
      rng_(seed) {
  sessions_.reserve(engine.size());
  for (std::uint32_t i = 0; i < engine.size(); ++i) {
    sessions_.emplace_back(config_, static_cast<LineSessionIo&>(*this), i,
                           fmt::format("{}-{}", settings_.nonce, first_client_ + i));
  }
}

void LineDriver::schedule_starts(std::int64_t start_ns) {
  std::uniform_int_distribution<std::int64_t> offset(0, std::max<std::int64_t>(settings_.ramp_ns - 1, 0));
  for (std::uint32_t i = 0; i < sessions_.size(); ++i) {
    engine_.add_timer(uring::ClientTimer{start_ns + offset(rng_), i, 0, kStart, 0});
  }
}

void LineDriver::on_timer(const uring::ClientTimer& timer) {
  LineSession& session = sessions_[timer.conn];
  const std::int64_t now = uring::now_ns();
  if (timer.kind == kStart) {
    tally_.note_start(now);
    session.start();
    return;
  }
  const auto kind = static_cast<LineTimer>(timer.kind - 1);
  const uring::ClientConn& conn = engine_.conn(timer.conn);
  if (kind != LineTimer::kRetry && (timer.gen != conn.gen || conn.phase != uring::ConnPhase::kOpen)) {
    return;  // armed for a connection that is gone
  }
  const unsigned ok_timeouts = session.counts().ok_timeouts;
  session.on_timer(kind, now);
  tally_.timeouts.fetch_add(session.counts().ok_timeouts - ok_timeouts, std::memory_order_relaxed);
}

void LineDriver::on_connected(uring::ClientConn& conn) {
  LineSession& session = sessions_[conn.index];
  if (session.counts().attempts > 1) {
    tally_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  tally_.in_flight.fetch_add(1, std::memory_order_relaxed);
  session.on_connected(uring::now_ns());
}

void LineDriver::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  LineSession& session = sessions_[conn.index];
  const bool had_ok = session.got_ok();
  session.on_bytes(bytes, uring::now_ns());
  if (!had_ok && session.got_ok()) {
    tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
}

void LineDriver::on_drained(uring::ClientConn& conn) {
  sessions_[conn.index].on_drained(uring::now_ns());
}

void LineDriver::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  LineSession& session = sessions_[conn.index];
  if (info.was_open && !info.requested && !session.got_ok()) {
    tally_.drops.fetch_add(1, std::memory_order_relaxed);
  }
  if (info.was_open && !session.got_ok()) {
    tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
  if (engine_.aborting() && !session.got_ok()) {
    session.give_up(
        make_error(fmt::format("the deadline passed ({} attempts made)", session.counts().attempts)));
    return;
  }
  session.on_closed(LineConnectionEnd{info.was_open, info.eof, info.error});
}

void LineDriver::connect(std::uint32_t tag) {
  if (sessions_[tag].counts().attempts > 1) {
    tally_.retries.fetch_add(1, std::memory_order_relaxed);
  }
  engine_.connect(engine_.conn(tag));
}

void LineDriver::send(std::uint32_t tag, std::string_view bytes) {
  engine_.send(engine_.conn(tag), bytes);
}

void LineDriver::close(std::uint32_t tag) {
  engine_.close(engine_.conn(tag));
}

void LineDriver::arm(std::uint32_t tag, LineTimer timer, std::int64_t delay_ns) {
  engine_.add_timer(
      uring::ClientTimer{uring::now_ns() + delay_ns, tag, engine_.conn(tag).gen, timer_kind(timer), 0});
}

std::size_t LineDriver::unsent_bytes(std::uint32_t tag) const {
  return uring::ClientLoop::unsent_bytes(engine_.conn(tag));
}

std::int64_t LineDriver::ok_delay_ns(std::uint32_t tag) {
  (void)tag;
  return settings_.ok_delay.sample(rng_);
}

std::uint64_t LineDriver::random(std::uint32_t tag) {
  (void)tag;
  return rng_();
}

// Every X of the run is unique, so any line but our own traffic is the hub's mistake or complaint
// (`error server full` and friends): noted, and the attempt starts over.
bool LineDriver::keep_after(std::uint32_t tag, LineSurprise what, std::string_view line) {
  const std::uint32_t client = first_client_ + tag;
  switch (what) {
    case LineSurprise::kForeignOk:
      ++tally_.misrouted_oks;
      tally_.note_failure(fmt::format("client {}: got `{}`, for an X it never sent", client, line));
      return true;
    case LineSurprise::kDuplicateOk: ++tally_.duplicate_oks; return true;
    case LineSurprise::kOverlongLine:
      ++tally_.hub_errors;
      tally_.note_failure(
          fmt::format("client {}: the hub sent a line over {} bytes", client, config_.max_line_bytes));
      return false;
    case LineSurprise::kLineTooLong:
    case LineSurprise::kOtherLine: break;
  }
  ++tally_.hub_errors;
  tally_.note_failure(fmt::format("client {}: the hub said `{}`", client, line));
  return false;
}

void LineDriver::settled(std::uint32_t tag) {
  const LineSession& session = sessions_[tag];
  ++settled_;
  if (session.state() == LineSession::State::kDone) {
    tally_.latency.record(session.latency_ns());
    tally_.last_close_ns = std::max(tally_.last_close_ns, uring::now_ns());
    tally_.done.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  tally_.note_failure(fmt::format("client {}: {}", first_client_ + tag, session.failure()->message));
  tally_.failed.fetch_add(1, std::memory_order_relaxed);
}

void LineDriver::finalize() {
  for (LineSession& session : sessions_) {
    if (session.settled()) {
      continue;
    }
    if (session.state() == LineSession::State::kOpen) {
      tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    session.give_up(
        make_error(fmt::format("unfinished at the deadline ({} attempts made)", session.counts().attempts)));
  }
}

}  // namespace ringhub::stress
