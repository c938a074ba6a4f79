// LineDriver: the ramp and the tallies around an AsyncLineClient; see line_driver.hpp.
#include "perf/stress/line_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace ringhub::stress {

LineDriver::LineDriver(client::AsyncLineOptions options, const LineSettings& settings,
                       std::uint32_t first_client, Tally& tally, std::uint64_t seed)
    : options_(std::move(options)),
      settings_(settings),
      first_client_(first_client),
      tally_(tally),
      rng_(seed) {
  options_.session.ok_timeout_ns = settings.timeout_ns;
  options_.session.max_attempts = settings.retries + 1;
  options_.session.endpoint = settings.endpoint;
  options_.seed = seed ^ 0x6a09e667f3bcc908ULL;                  // the jitter's own stream, not the ramp's
  options_.start_at = client::AsyncLineOptions::Start::kSpread;  // over every hub and source address
}

Result<void> LineDriver::init() {
  Result<std::unique_ptr<client::AsyncLineClient>> made = client::AsyncLineClient::create(options_, *this);
  if (!made) {
    return made.error();
  }
  client_ = std::move(*made);
  xs_.reserve(client_->size());
  for (std::uint32_t i = 0; i < client_->size(); ++i) {
    xs_.push_back(fmt::format("{}-{}", settings_.nonce, first_client_ + i));
  }
  return {};
}

void LineDriver::run(std::int64_t start_ns, std::int64_t deadline_ns, const std::atomic<bool>& abort) {
  std::uniform_int_distribution<std::int64_t> offset(0, std::max<std::int64_t>(settings_.ramp_ns - 1, 0));
  for (std::uint32_t i = 0; i < client_->size(); ++i) {
    client_->start(i, std::move(xs_[i]), start_ns + offset(rng_));
  }
  xs_ = {};
  client_->run(deadline_ns, abort);
}

std::int64_t LineDriver::ok_delay_ns(std::uint32_t client) {
  (void)client;
  return settings_.ok_delay.sample(rng_);
}

// Every X of the run is unique, so any line but our own traffic is the hub's mistake or complaint
// (`error server full` and friends): noted, and the attempt starts over.
bool LineDriver::keep_after(std::uint32_t client, LineSurprise what, std::string_view line) {
  const std::uint32_t number = first_client_ + client;
  switch (what) {
    case LineSurprise::kForeignOk:
      ++tally_.misrouted_oks;
      tally_.note_failure(fmt::format("client {}: got `{}`, for an X it never sent", number, line));
      return true;
    case LineSurprise::kDuplicateOk: ++tally_.duplicate_oks; return true;
    case LineSurprise::kOverlongLine:
      ++tally_.hub_errors;
      tally_.note_failure(fmt::format("client {}: the hub sent a line over {} bytes", number,
                                      options_.session.max_line_bytes));
      return false;
    case LineSurprise::kLineTooLong:
    case LineSurprise::kOtherLine: break;
  }
  ++tally_.hub_errors;
  tally_.note_failure(fmt::format("client {}: the hub said `{}`", number, line));
  return false;
}

void LineDriver::on_attempt(std::uint32_t client, unsigned attempt) {
  (void)client;
  if (attempt == 1) {
    tally_.note_start(uring::now_ns());
  } else {
    tally_.retries.fetch_add(1, std::memory_order_relaxed);
  }
}

void LineDriver::on_connected(std::uint32_t client) {
  if (client_->session(client)->counts().attempts > 1) {
    tally_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  tally_.in_flight.fetch_add(1, std::memory_order_relaxed);
}

void LineDriver::on_answered(std::uint32_t client) {
  (void)client;
  tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
}

void LineDriver::on_closed(std::uint32_t client, const uring::CloseInfo& info) {
  const bool answered = client_->session(client)->got_ok();
  if (info.was_open && !info.requested && !answered) {
    tally_.drops.fetch_add(1, std::memory_order_relaxed);
  }
  if (info.was_open && !answered) {
    tally_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
}

void LineDriver::on_settled(std::uint32_t client) {
  const LineSession& session = *client_->session(client);
  tally_.timeouts.fetch_add(session.counts().ok_timeouts, std::memory_order_relaxed);
  if (session.state() == LineSession::State::kDone) {
    tally_.latency.record(session.latency_ns());
    tally_.last_close_ns = std::max(tally_.last_close_ns, uring::now_ns());
    tally_.done.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  tally_.note_failure(fmt::format("client {}: {}", first_client_ + client, session.failure()->message));
  tally_.failed.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ringhub::stress
