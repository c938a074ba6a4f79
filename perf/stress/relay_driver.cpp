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

RelayDriver::RelayDriver(uring::ClientLoop& engine, const RelaySettings& settings, RelayShared& shared,
                         std::uint32_t first_client, Tally& tally)
    : engine_(engine),
      settings_(settings),
      shared_(shared),
      first_client_(first_client),
      tally_(tally),
      rng_(payload::mix(settings.seed ^ first_client)),
      clients_(engine.size()),
      plans_(engine.size()) {}

void RelayDriver::schedule_starts(std::int64_t start_ns) {
  std::uniform_int_distribution<std::int64_t> offset(0, std::max<std::int64_t>(settings_.ramp_ns - 1, 0));
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    engine_.add_timer(uring::ClientTimer{start_ns + offset(rng_), i, 0, kStart, 0});
  }
}

void RelayDriver::on_timer(const uring::ClientTimer& timer) {
  if (closing_) {
    return;
  }
  uring::ClientConn& conn = engine_.conn(timer.conn);
  if (timer.kind == kStart) {
    tally_.note_start(uring::now_ns());
  }
  start_attempt(conn);
}

void RelayDriver::start_attempt(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  if (client.attempts > 0) {
    tally_.retries.fetch_add(1, std::memory_order_relaxed);
  }
  ++client.attempts;
  client.state = State::kConnecting;
  engine_.connect(conn);
}

void RelayDriver::on_connected(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  if (closing_) {
    engine_.close(conn);
    return;
  }
  client.state = State::kIdentifying;
  if (client.attempts > 1) {
    tally_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  client.reader = ClientFrameReader{};
  client.delivering = Delivering{};
  codec::append_identity_request(engine_.out(conn));
  engine_.flush(conn);
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
    uring::ClientConn& conn = engine_.conn(local);
    if (conn.phase != uring::ConnPhase::kOpen || clients_[local].state != State::kReady) {
      // A sender that lost its connection sends nothing: its receivers come up short.
      ready_senders_.pop_front();
      continue;
    }
    if (!reserve_in_flight(local)) {
      return;  // the window is full: deliveries arriving free it (end_frame)
    }
    ready_senders_.pop_front();
    build_frame(conn);
  }
}

bool RelayDriver::reserve_in_flight(std::uint32_t local) {
  const Planned& planned = plans_[local][clients_[local].next_relay];
  return shared_.in_flight.try_reserve((protocol::kDeliverPrefixSize + planned.size) *
                                       planned.receivers.size());
}

// RELAY header, receiver ids, payload header, payload: written straight into the connection's queue.
void RelayDriver::build_frame(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  Planned& planned = plans_[conn.index][client.next_relay];
  const std::uint32_t seq = ++client.next_relay;
  const std::size_t count = planned.receivers.size();
  const std::size_t ids_bytes = protocol::kIdSize * count;
  std::vector<std::uint8_t>& out = engine_.out(conn);
  const std::size_t base = out.size();
  out.resize(base + protocol::kHeaderSize + ids_bytes + planned.size);
  std::uint8_t* frame = out.data() + base;
  const protocol::FrameHeader header{FrameType::kRelay, static_cast<std::uint8_t>(count), 0,
                                     static_cast<std::uint32_t>(ids_bytes + planned.size)};
  codec::encode_header(std::span<std::uint8_t, protocol::kHeaderSize>(frame, protocol::kHeaderSize), header);
  for (std::size_t k = 0; k < count; ++k) {
    codec::store_u64(frame + protocol::kHeaderSize + protocol::kIdSize * k,
                     shared_.ids[planned.receivers[k]].load(std::memory_order_relaxed));
  }
  std::uint8_t* body = frame + protocol::kHeaderSize + ids_bytes;
  const std::size_t payload_size = planned.size - payload::kHeaderSize;
  const std::uint64_t key = payload::key(settings_.seed, global(conn), seq);
  payload::fill(body + payload::kHeaderSize, payload_size, key);
  const std::uint64_t checksum = payload::fnv1a(
      payload::kFnvBasis, std::span<const std::uint8_t>(body + payload::kHeaderSize, payload_size));
  payload::encode(body, payload::BodyHeader{payload::kMagic, global(conn), seq, planned.size, checksum});
  engine_.flush(conn);
  client.sending_frame = true;
  ++frames_in_flight_;
}

void RelayDriver::on_drained(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
  if (!client.sending_frame) {
    return;  // the IDENTITY request
  }
  client.sending_frame = false;
  --frames_in_flight_;
  tally_.relays_sent.fetch_add(1, std::memory_order_relaxed);
  if (client.next_relay < plans_[conn.index].size()) {
    ready_senders_.push_back(conn.index);
  }
}

// --- closing

void RelayDriver::close_everyone() {
  closing_ = true;
  for (std::uint32_t i = 0; i < clients_.size(); ++i) {
    uring::ClientConn& conn = engine_.conn(i);
    if (conn.phase != uring::ConnPhase::kIdle) {
      engine_.close(conn);
    } else if (clients_[i].state != State::kDone && clients_[i].state != State::kFailed) {
      give_up(conn, "not connected when the run closed");
    }
  }
}

void RelayDriver::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  Client& client = clients_[conn.index];
  client.closed = info;
  if (client.sending_frame) {
    client.sending_frame = false;
    --frames_in_flight_;
  }
  if (client.state == State::kDone || client.state == State::kFailed) {
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
  const std::string why = info.eof          ? std::string("the hub closed the connection")
                          : info.error != 0 ? std::string(std::strerror(info.error))
                                            : std::string("closed");
  if (client.state == State::kReady || closing_ || client.attempts > settings_.retries ||
      engine_.aborting()) {
    give_up(conn, fmt::format("lost its connection ({}) after {} attempts", why, client.attempts));
    return;  // an identified client cannot come back: its id would change
  }
  client.state = State::kBackoff;
  engine_.add_timer(
      uring::ClientTimer{uring::now_ns() + RetryBackoff{}.before_attempt(client.attempts + 1, rng_()),
                         conn.index, 0, kRetry, 0});
}

void RelayDriver::give_up(uring::ClientConn& conn, const std::string& why) {
  Client& client = clients_[conn.index];
  const bool was_identified = client.state == State::kReady;
  client.state = State::kFailed;
  tally_.failed.fetch_add(1, std::memory_order_relaxed);
  tally_.note_failure(fmt::format("client {}: {}", global(conn), why));
  if (!was_identified) {
    shared_.settled.fetch_add(1, std::memory_order_acq_rel);  // the barrier must not wait for it
  }
  engine_.close(conn);
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

// --- receiving: core/client_frame_reader cuts the frames; payloads are checked in place, never copied

struct RelayDriver::Receiving {
  RelayDriver& driver;
  uring::ClientConn& conn;

  // A protocol failure closes the connection; nothing after it in the same bytes is looked at.
  bool open() const { return conn.phase == uring::ConnPhase::kOpen; }
  void on_identity_reply(protocol::UserId id) {
    if (open()) {
      driver.on_identity_reply(conn, id);
    }
  }
  void on_list_reply(std::span<const protocol::UserId> /*ids*/) {
    if (open()) {
      driver.protocol_failure(conn, "unexpected LIST_REPLY");
    }
  }
  void on_deliver_begin(protocol::UserId sender, std::uint32_t size) {
    if (open()) {
      driver.on_deliver_begin(conn, sender, size);
    }
  }
  void on_deliver_bytes(std::span<const std::uint8_t> bytes) {
    if (open()) {
      driver.on_deliver_bytes(conn, bytes);
    }
  }
  void on_deliver_end() {
    if (open()) {
      driver.on_deliver_end(conn);
    }
  }
  void on_error(std::uint8_t code, std::string_view reason) {
    if (open()) {
      driver.on_hub_error(conn, code, reason);
    }
  }
};

void RelayDriver::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  Client& client = clients_[conn.index];
  client.bytes_in += bytes.size();
  shared_.bytes_received.fetch_add(bytes.size(), std::memory_order_relaxed);
  client.last_bytes_ns = uring::now_ns();
  if (conn.phase != uring::ConnPhase::kOpen || client.reader.error()) {
    return;
  }
  Receiving receiving{*this, conn};
  if (const auto error = client.reader.feed(bytes, receiving);
      error && conn.phase == uring::ConnPhase::kOpen) {
    protocol_failure(conn, fmt::format("malformed frame: {}", hub_frame_error_name(*error)));
  }
}

void RelayDriver::on_identity_reply(uring::ClientConn& conn, std::uint64_t id) {
  Client& client = clients_[conn.index];
  if (client.state == State::kIdentifying) {
    shared_.ids[global(conn)].store(id, std::memory_order_release);
    client.state = State::kReady;
    tally_.identified.fetch_add(1, std::memory_order_relaxed);
    shared_.settled.fetch_add(1, std::memory_order_acq_rel);
  }
}

void RelayDriver::on_hub_error(uring::ClientConn& conn, std::uint8_t code, std::string_view reason) {
  ++tally_.hub_errors;
  ++clients_[conn.index].error_frames;
  clients_[conn.index].last_error = code;
  tally_.note_failure(fmt::format("client {}: ERROR {} `{}`", global(conn), code, reason));
  // the hub closes the connection after it
}

void RelayDriver::on_deliver_begin(uring::ClientConn& conn, std::uint64_t sender_id, std::uint32_t size) {
  if (size < payload::kHeaderSize) {
    protocol_failure(conn, fmt::format("a DELIVER of {} body bytes, too short for a payload header", size));
    return;
  }
  Delivering& d = clients_[conn.index].delivering;
  d = Delivering{};
  d.sender_id = sender_id;
  d.size = size;
  d.open = true;
  d.frame_bytes = static_cast<std::uint32_t>(protocol::kDeliverPrefixSize) + size;
}

void RelayDriver::on_deliver_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  Client& client = clients_[conn.index];
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

void RelayDriver::on_meta(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
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

void RelayDriver::on_deliver_end(uring::ClientConn& conn) {
  Client& client = clients_[conn.index];
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
  view.closed = client.closed;
  view.open_at_end = engine_.conn(local).phase != uring::ConnPhase::kIdle;
  view.last_bytes_ns = client.last_bytes_ns;
  view.mid_frame = !client.reader.at_boundary();
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

void RelayDriver::protocol_failure(uring::ClientConn& conn, const std::string& why) {
  ++tally_.bad_deliveries;
  give_up(conn, fmt::format("protocol failure: {}", why));
}

}  // namespace ringhub::stress
