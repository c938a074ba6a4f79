// RelayDriver: identify, plan, send and verify; see relay_driver.hpp.
#include "perf/stress/relay_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/frame_codec.hpp"
#include "core/retry_backoff.hpp"
#include "perf/stress/payload.hpp"

namespace ringhub::stress {

namespace {

// RELAY frames being written per engine at once. Bounds the harness's memory (each frame is up to
// ~1 MiB) and the bytes the hub queues for any one receiver (its slow-consumer limit is 64 MiB).
constexpr unsigned kMaxFramesInFlight = 16;

using protocol::FrameType;

}  // namespace

RelayDriver::RelayDriver(client::AsyncRelayOptions options, const RelaySettings& settings,
                         RelayShared& shared, std::uint32_t first_client, Tally& tally)
    : options_(std::move(options)),
      settings_(settings),
      shared_(shared),
      first_client_(first_client),
      tally_(tally),
      rng_(payload::mix(settings.seed ^ first_client)),
      clients_(options_.connections),
      plans_(options_.connections) {
  options_.stream_deliveries = true;  // bodies are checked as they stream in, never gathered
}

Result<void> RelayDriver::init() {
  Result<std::unique_ptr<client::AsyncRelayClient>> made = client::AsyncRelayClient::create(options_, *this);
  if (!made) {
    return made.error();
  }
  client_ = std::move(*made);
  return {};
}

void RelayDriver::run(std::int64_t start_ns, std::int64_t deadline_ns, const std::atomic<bool>& abort) {
  schedule_starts(start_ns);
  client_->run(deadline_ns, abort, [this] { return closing_; });
  finalize();
}

void RelayDriver::schedule_starts(std::int64_t start_ns) {
  std::uniform_int_distribution<std::int64_t> offset(0, std::max<std::int64_t>(settings_.ramp_ns - 1, 0));
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    client_->add_timer(i, start_ns + offset(rng_), kStart);
  }
}

void RelayDriver::on_timer(std::uint32_t conn, std::uint32_t kind) {
  if (closing_) {
    return;
  }
  if (kind == kStart) {
    tally_.note_start(uring::now_ns());
  }
  start_attempt(conn);
}

void RelayDriver::start_attempt(std::uint32_t conn) {
  Client& client = clients_[conn];
  if (client.attempts > 0) {
    tally_.retries.fetch_add(1, std::memory_order_relaxed);
  }
  ++client.attempts;
  client.state = State::kConnecting;
  client_->open(conn, route_cursor_++);
}

void RelayDriver::on_open(std::uint32_t conn) {
  Client& client = clients_[conn];
  if (closing_) {
    client_->close(conn);
    return;
  }
  client.state = State::kIdentifying;
  if (client.attempts > 1) {
    tally_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  client.delivering = Delivering{};
  (void)client_->identity(conn);  // just opened: it cannot fail
}

void RelayDriver::on_iteration() {
  if (!planned_ && shared_.settled.load(std::memory_order_acquire) == settings_.clients) {
    plan();
  }
  pump_senders();
  if (!closing_ && shared_.close_now.load(std::memory_order_acquire)) {
    close_everyone();
  }
}

// --- planning and sending

void RelayDriver::plan() {
  planned_ = true;
  std::vector<std::uint32_t> pool;  // every identified client, in any engine
  for (std::uint32_t c = 0; c < settings_.clients; ++c) {
    if (shared_.ids[c].load(std::memory_order_acquire) != 0) {
      pool.push_back(c);
    }
  }
  stamp_.assign(settings_.clients, 0);
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    if (shared_.is_sender[first_client_ + i] == 0 || clients_[i].state != State::kReady) {
      continue;
    }
    for (unsigned r = 0; r < settings_.relays_per_sender; ++r) {
      plan_one(i, pool);  // the relay's sequence number is its position in plans_[i], from 1
    }
    if (!plans_[i].empty()) {
      ready_senders_.push_back(i);
    }
  }
  stamp_ = {};
  shared_.planners_done.fetch_add(1, std::memory_order_acq_rel);  // publishes the counts above
}

void RelayDriver::plan_one(std::uint32_t local, const std::vector<std::uint32_t>& pool) {
  const std::uint32_t self = first_client_ + local;
  const std::size_t others = pool.size() - 1;  // the sender is in the pool: it is identified
  if (others == 0) {
    return;
  }
  const auto fanout = std::uniform_int_distribution<std::size_t>(
      1, std::min<std::size_t>(settings_.max_fanout, others))(rng_);
  stamp_[self] = ++stamp_now_;
  Planned planned;
  std::uniform_int_distribution<std::size_t> pick(0, pool.size() - 1);
  while (planned.receivers.size() < fanout) {
    const std::uint32_t receiver = pool[pick(rng_)];
    if (stamp_[receiver] != stamp_now_) {  // distinct and not the sender: the hub would skip those
      stamp_[receiver] = stamp_now_;
      planned.receivers.push_back(receiver);
      shared_.expected[receiver].fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Log-uniform sizes: as many tiny bodies as large ones, and the largest is exactly reachable.
  const double low = std::log(static_cast<double>(payload::kHeaderSize));
  const double high = std::log(static_cast<double>(settings_.max_size) + 1.0);
  const double size = std::exp(std::uniform_real_distribution<double>(low, high)(rng_));
  planned.size = std::clamp(static_cast<std::uint32_t>(size),
                            static_cast<std::uint32_t>(payload::kHeaderSize), settings_.max_size);
  shared_.deliveries_expected.fetch_add(fanout, std::memory_order_relaxed);
  shared_.bytes_expected.fetch_add(std::uint64_t{planned.size} * fanout, std::memory_order_relaxed);
  shared_.relays_planned.fetch_add(1, std::memory_order_relaxed);
  plans_[local].push_back(std::move(planned));
}

void RelayDriver::pump_senders() {
  while (frames_in_flight_ < kMaxFramesInFlight && !ready_senders_.empty() && !closing_) {
    const std::uint32_t local = ready_senders_.front();
    if (!client_->is_open(local) || client_->write_failed(local) || clients_[local].state != State::kReady) {
      // A sender that lost its connection sends nothing: its receivers come up short.
      ready_senders_.pop_front();
      continue;
    }
    if (!reserve_in_flight(local)) {
      return;  // the window is full: deliveries arriving free it (end_frame)
    }
    ready_senders_.pop_front();
    build_frame(local);
  }
}

bool RelayDriver::reserve_in_flight(std::uint32_t local) {
  const Planned& planned = plans_[local][clients_[local].next_relay];
  return shared_.in_flight.try_reserve((protocol::kDeliverPrefixSize + planned.size) *
                                       planned.receivers.size());
}

// RELAY header, receiver ids, payload header, payload: written straight into the connection's queue.
void RelayDriver::build_frame(std::uint32_t conn) {
  Client& client = clients_[conn];
  Planned& planned = plans_[conn][client.next_relay];
  const std::uint32_t seq = ++client.next_relay;
  receiver_ids_.clear();
  for (const std::uint32_t receiver : planned.receivers) {
    receiver_ids_.push_back(shared_.ids[receiver].load(std::memory_order_relaxed));
  }
  Result<std::span<std::uint8_t>> room = client_->relay_in_place(conn, receiver_ids_, planned.size);
  if (!room) {  // checked open and writable just before, and the plan keeps the limits: a harness bug
    --client.next_relay;
    shared_.in_flight.release((protocol::kDeliverPrefixSize + planned.size) * planned.receivers.size());
    protocol_failure(conn, fmt::format("cannot queue a RELAY: {}", room.error().message));
    return;
  }
  std::uint8_t* body = room->data();
  const std::size_t payload_size = planned.size - payload::kHeaderSize;
  const std::uint64_t key = payload::key(settings_.seed, global(conn), seq);
  payload::fill(body + payload::kHeaderSize, payload_size, key);
  const std::uint64_t checksum = payload::fnv1a(
      payload::kFnvBasis, std::span<const std::uint8_t>(body + payload::kHeaderSize, payload_size));
  payload::encode(body, payload::BodyHeader{payload::kMagic, global(conn), seq, planned.size, checksum});
  client.sending_frame = true;
  ++frames_in_flight_;
}

void RelayDriver::on_sent(std::uint32_t conn) {
  Client& client = clients_[conn];
  if (!client.sending_frame) {
    return;  // the IDENTITY request
  }
  client.sending_frame = false;
  --frames_in_flight_;
  tally_.relays_sent.fetch_add(1, std::memory_order_relaxed);
  if (client.next_relay < plans_[conn].size()) {
    ready_senders_.push_back(conn);
  }
}

// --- closing

void RelayDriver::close_everyone() {
  closing_ = true;
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    if (!client_->is_idle(i)) {
      client_->close(i);
    } else if (clients_[i].state != State::kDone && clients_[i].state != State::kFailed) {
      give_up(i, "not connected when the run closed");
    }
  }
}

void RelayDriver::on_closed(std::uint32_t conn, const Error& why) {
  Client& client = clients_[conn];
  const uring::CloseInfo& info = client_->close_info(conn);
  if (client.sending_frame) {
    client.sending_frame = false;
    --frames_in_flight_;
  }
  if (client.state == State::kDone || client.state == State::kFailed) {
    return;
  }
  if (why.is_system(EPROTO)) {  // the library read a malformed frame and closed
    protocol_failure(conn, why.message);
    return;
  }
  if (closing_ && info.requested && client.state == State::kReady) {
    client.state = State::kDone;
    tally_.done.fetch_add(1, std::memory_order_relaxed);
    tally_.last_close_ns = std::max(tally_.last_close_ns, uring::now_ns());
    return;
  }
  if (info.was_open && !info.requested) {
    tally_.drops.fetch_add(1, std::memory_order_relaxed);
  }
  if (client.state == State::kReady || closing_ || client.attempts > settings_.retries ||
      client_->stopping()) {
    give_up(conn, fmt::format("lost its connection ({}) after {} attempts", why.message, client.attempts));
    return;  // an identified client cannot come back: its id would change
  }
  client.state = State::kBackoff;
  client_->add_timer(conn, uring::now_ns() + RetryBackoff{}.before_attempt(client.attempts + 1, rng_()),
                     kRetry);
}

void RelayDriver::give_up(std::uint32_t conn, const std::string& why) {
  Client& client = clients_[conn];
  const bool was_identified = client.state == State::kReady;
  client.state = State::kFailed;
  tally_.failed.fetch_add(1, std::memory_order_relaxed);
  tally_.note_failure(fmt::format("client {}: {}", global(conn), why));
  if (!was_identified) {
    shared_.settled.fetch_add(1, std::memory_order_acq_rel);  // the barrier must not wait for it
  }
  client_->close(conn);
}

void RelayDriver::finalize() {
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    Client& client = clients_[i];
    if (client.state != State::kDone && client.state != State::kFailed) {
      client.state = State::kFailed;
      tally_.failed.fetch_add(1, std::memory_order_relaxed);
      tally_.note_failure(fmt::format("client {}: unfinished at the deadline", first_client_ + i));
    }
    const std::uint32_t expected = shared_.expected[first_client_ + i].load(std::memory_order_relaxed);
    const std::uint32_t arrived = client.verified;
    tally_.missing_deliveries += expected > arrived ? expected - arrived : 0;
    tally_.extra_deliveries += arrived > expected ? arrived - expected : 0;
  }
}

// --- receiving: the library cuts the frames; payloads are checked in place as they stream, never copied

void RelayDriver::on_read(std::uint32_t conn, std::size_t bytes) {
  Client& client = clients_[conn];
  client.bytes_in += bytes;
  shared_.bytes_received.fetch_add(bytes, std::memory_order_relaxed);
  client.last_bytes_ns = uring::now_ns();
}

void RelayDriver::on_identity(std::uint32_t conn, protocol::UserId id) {
  Client& client = clients_[conn];
  if (client.state == State::kIdentifying) {
    shared_.ids[global(conn)].store(id, std::memory_order_release);
    client.state = State::kReady;
    tally_.identified.fetch_add(1, std::memory_order_relaxed);
    shared_.settled.fetch_add(1, std::memory_order_acq_rel);
  }
}

void RelayDriver::on_list(std::uint32_t conn, std::span<const protocol::UserId> /*others*/) {
  protocol_failure(conn, "unexpected LIST_REPLY");
}

// Streamed deliveries (the options say so) never arrive whole.
void RelayDriver::on_delivery(std::uint32_t conn, protocol::UserId /*sender*/,
                              std::span<const std::uint8_t> /*body*/) {
  protocol_failure(conn, "a whole DELIVER from a client set to stream them");
}

void RelayDriver::on_hub_error(std::uint32_t conn, std::uint8_t code, std::string_view reason) {
  ++tally_.hub_errors;
  ++clients_[conn].error_frames;
  clients_[conn].last_error = code;
  tally_.note_failure(
      fmt::format("client {}: ERROR {} `{}`", global(conn), code, client::printable_reason(reason)));
  // the hub closes the connection after it
}

void RelayDriver::on_delivery_begin(std::uint32_t conn, protocol::UserId sender_id, std::uint32_t size) {
  if (size < payload::kHeaderSize) {
    protocol_failure(conn, fmt::format("a DELIVER of {} body bytes, too short for a payload header", size));
    return;
  }
  Delivering& d = clients_[conn].delivering;
  d = Delivering{};
  d.sender_id = sender_id;
  d.size = size;
  d.open = true;
  d.frame_bytes = static_cast<std::uint32_t>(protocol::kDeliverPrefixSize) + size;
}

void RelayDriver::on_delivery_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) {
  Client& client = clients_[conn];
  Delivering& d = client.delivering;
  if (d.meta_len < payload::kHeaderSize) {
    const std::size_t n = std::min<std::size_t>(payload::kHeaderSize - d.meta_len, bytes.size());
    std::memcpy(d.meta + d.meta_len, bytes.data(), n);
    d.meta_len = static_cast<std::uint8_t>(d.meta_len + n);
    bytes = bytes.subspan(n);
    if (d.meta_len < payload::kHeaderSize) {
      return;
    }
    on_meta(conn);
  }
  if (!bytes.empty()) {
    on_payload(client, bytes);
  }
}

void RelayDriver::on_meta(std::uint32_t conn) {
  Client& client = clients_[conn];
  Delivering& d = client.delivering;
  const payload::BodyHeader body = payload::decode(d.meta);
  const bool valid = body.magic == payload::kMagic && body.sender < settings_.clients &&
                     shared_.ids[body.sender].load(std::memory_order_relaxed) == d.sender_id &&
                     body.size == d.size;
  if (!valid || !check_order(client, body.sender, body.seq)) {
    d.corrupt = true;
    tally_.note_failure(
        fmt::format("client {}: DELIVER from id {} has a bad header (sender {}, seq {}, size {})",
                    global(conn), d.sender_id, body.sender, body.seq, body.size));
  }
  d.key = payload::key(settings_.seed, body.sender, body.seq);
  d.position = 0;
  d.checksum_ok = !d.corrupt && body.checksum == expected_checksum(body.sender, body.seq, body.size);
  d.sender = body.sender;
  d.seq = body.seq;
}

std::uint64_t RelayDriver::expected_checksum(std::uint32_t sender, std::uint32_t seq, std::uint32_t size) {
  const std::uint64_t id = (std::uint64_t{sender} << 32) | seq;
  if (const auto found = checksums_.find(id); found != checksums_.end()) {
    return found->second;
  }
  const std::size_t payload_size = size - payload::kHeaderSize;
  scratch_.resize(payload_size);
  payload::fill(scratch_.data(), payload_size, payload::key(settings_.seed, sender, seq));
  const std::uint64_t checksum = payload::fnv1a(payload::kFnvBasis, scratch_);
  checksums_.emplace(id, checksum);
  return checksum;
}

void RelayDriver::on_payload(Client& client, std::span<const std::uint8_t> bytes) {
  Delivering& d = client.delivering;
  if (!d.corrupt && !payload::matches(bytes, d.position, d.key)) {
    d.corrupt = true;
  }
  d.position += bytes.size();
}

void RelayDriver::on_delivery_end(std::uint32_t conn) {
  Client& client = clients_[conn];
  Delivering& d = client.delivering;
  if (!d.corrupt && d.checksum_ok) {
    tally_.verified.fetch_add(1, std::memory_order_relaxed);
  } else {
    ++tally_.bad_deliveries;
    tally_.note_failure(fmt::format("client {}: a DELIVER's bytes differ from what was sent", global(conn)));
  }
  ++client.verified;  // arrived and checked, good or bad: "missing" is what never came
  d.open = false;
  shared_.in_flight.release(d.frame_bytes);
  client.arrived.push_back((std::uint64_t{d.sender} << 32) | d.seq);
  shared_.deliveries_verified.fetch_add(1, std::memory_order_relaxed);
}

bool RelayDriver::check_order(Client& client, std::uint32_t sender, std::uint32_t seq) {
  for (auto& [from, last] : client.last_seq) {
    if (from == sender) {
      const bool ascending = seq > last;  // one sender's DELIVERs arrive in send order, each once
      last = std::max(last, seq);
      return ascending;
    }
  }
  client.last_seq.emplace_back(sender, seq);
  return true;
}

bool RelayDriver::received(std::uint32_t local, std::uint32_t sender, std::uint32_t seq) const {
  const std::vector<std::uint64_t>& arrived = clients_[local].arrived;
  return std::find(arrived.begin(), arrived.end(), (std::uint64_t{sender} << 32) | seq) != arrived.end();
}

RelayDriver::ReceiverView RelayDriver::receiver(std::uint32_t local) const {
  const Client& client = clients_[local];
  const Delivering& d = client.delivering;
  ReceiverView view;
  view.hub_id = shared_.ids[first_client_ + local].load(std::memory_order_relaxed);
  view.bytes_in = client.bytes_in;
  view.verified = client.verified;
  view.error_frames = client.error_frames;
  view.last_error = client.last_error;
  view.closed = client_->close_info(local);
  view.open_at_end = !client_->is_idle(local);
  view.last_bytes_ns = client.last_bytes_ns;
  view.mid_frame = client_->mid_frame(local);
  if (d.open) {  // inside a DELIVER (other frames are a few bytes: the type stays 0, unknown)
    view.frame_type = static_cast<std::uint8_t>(FrameType::kDeliver);
    const std::uint64_t body_seen =
        d.meta_len < payload::kHeaderSize ? d.meta_len : payload::kHeaderSize + d.position;
    view.frame_remaining = static_cast<std::uint32_t>(d.size - body_seen);
    const bool header_seen = d.meta_len == payload::kHeaderSize;
    view.frame_sender = header_seen ? d.sender : 0;
    view.frame_seq = header_seen ? d.seq : 0;
  }
  return view;
}

void RelayDriver::protocol_failure(std::uint32_t conn, const std::string& why) {
  ++tally_.bad_deliveries;
  give_up(conn, fmt::format("protocol failure: {}", why));
}

}  // namespace ringhub::stress
