// RelayDriver: identify, plan, send and verify; see relay_driver.hpp.
#include "perf/stress/relay_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/frame_codec.hpp"
#include "perf/stress/payload.hpp"

namespace ringhub::stress {

namespace {

// RELAY frames being written per engine at once. Bounds the harness's memory (each frame is up to
// ~1 MiB) and the bytes the hub queues for any one receiver (its slow-consumer limit is 64 MiB).
constexpr unsigned kMaxFramesInFlight = 16;

using protocol::FrameType;

}  // namespace

RelayDriver::RelayDriver(Engine& engine, const RelaySettings& settings, RelayShared& shared,
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
    engine_.add_timer(Timer{start_ns + offset(rng_), i, 0, kStart, 0});
  }
}

void RelayDriver::on_timer(const Timer& timer) {
  if (closing_) {
    return;
  }
  Conn& conn = engine_.conn(timer.conn);
  if (timer.kind == kStart) {
    tally_.note_start(now_ns());
  }
  start_attempt(conn);
}

void RelayDriver::start_attempt(Conn& conn) {
  Client& client = clients_[conn.index];
  if (client.attempts > 0) {
    tally_.retries.fetch_add(1, std::memory_order_relaxed);
  }
  ++client.attempts;
  client.state = State::kConnecting;
  engine_.connect(conn);
}

void RelayDriver::on_connected(Conn& conn) {
  Client& client = clients_[conn.index];
  if (closing_) {
    engine_.close(conn);
    return;
  }
  client.state = State::kIdentifying;
  if (client.attempts > 1) {
    tally_.reconnects.fetch_add(1, std::memory_order_relaxed);
  }
  client.parser = Parser{};
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
    Conn& conn = engine_.conn(local);
    if (conn.phase != Phase::kOpen || clients_[local].state != State::kReady) {
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
void RelayDriver::build_frame(Conn& conn) {
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

void RelayDriver::on_drained(Conn& conn) {
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
    Conn& conn = engine_.conn(i);
    if (conn.phase != Phase::kIdle) {
      engine_.close(conn);
    } else if (clients_[i].state != State::kDone && clients_[i].state != State::kFailed) {
      give_up(conn, "not connected when the run closed");
    }
  }
}

void RelayDriver::on_closed(Conn& conn, const CloseInfo& info) {
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
    tally_.last_close_ns = std::max(tally_.last_close_ns, now_ns());
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
  engine_.add_timer(Timer{now_ns() + backoff_ns(client.attempts, rng_), conn.index, 0, kRetry, 0});
}

void RelayDriver::give_up(Conn& conn, const std::string& why) {
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

// --- receiving: a byte-stream parser that never copies a payload

void RelayDriver::on_bytes(Conn& conn, std::span<const std::uint8_t> bytes) {
  Client& client = clients_[conn.index];
  client.bytes_in += bytes.size();
  shared_.bytes_received.fetch_add(bytes.size(), std::memory_order_relaxed);
  client.last_bytes_ns = now_ns();
  Parser& p = client.parser;
  while (!bytes.empty() && conn.phase == Phase::kOpen) {
    if (p.head_len < protocol::kHeaderSize) {
      const std::size_t n = std::min<std::size_t>(protocol::kHeaderSize - p.head_len, bytes.size());
      std::memcpy(p.head + p.head_len, bytes.data(), n);
      p.head_len = static_cast<std::uint8_t>(p.head_len + n);
      bytes = bytes.subspan(n);
      if (p.head_len == protocol::kHeaderSize && !start_frame(conn)) {
        return;
      }
      continue;
    }
    const bool in_meta = p.meta_len < p.meta_need;
    const std::size_t n =
        std::min<std::size_t>(in_meta ? p.meta_need - p.meta_len : p.remaining, bytes.size());
    if (in_meta) {
      std::memcpy(p.meta + p.meta_len, bytes.data(), n);
      p.meta_len = static_cast<std::uint8_t>(p.meta_len + n);
    } else {
      on_payload(clients_[conn.index], bytes.first(n));
    }
    p.remaining -= static_cast<std::uint32_t>(n);
    bytes = bytes.subspan(n);
    if (in_meta && p.meta_len == p.meta_need && !on_meta(conn)) {
      return;
    }
    if (p.remaining == 0) {
      end_frame(conn);
    }
  }
}

bool RelayDriver::start_frame(Conn& conn) {
  Parser& p = clients_[conn.index].parser;
  const protocol::FrameHeader header = codec::decode_header(
      std::span<const std::uint8_t, protocol::kHeaderSize>(p.head, protocol::kHeaderSize));
  p.type = static_cast<std::uint8_t>(header.type);
  p.remaining = header.length;
  p.frame_bytes = static_cast<std::uint32_t>(protocol::kHeaderSize) + header.length;
  p.meta_len = 0;
  p.corrupt = false;
  if (header.type == FrameType::kIdentityReply && header.length == protocol::kIdSize) {
    p.meta_need = protocol::kIdSize;
  } else if (header.type == FrameType::kDeliver &&
             header.length >= protocol::kIdSize + payload::kHeaderSize) {
    p.meta_need = protocol::kIdSize + payload::kHeaderSize;
  } else if (header.type == FrameType::kError && header.length >= 1) {
    p.meta_need = static_cast<std::uint8_t>(std::min<std::uint32_t>(header.length, sizeof p.meta));
  } else {
    protocol_failure(conn, fmt::format("unexpected frame type {:#x} length {}", p.type, header.length));
    return false;
  }
  return true;
}

bool RelayDriver::on_meta(Conn& conn) {
  Client& client = clients_[conn.index];
  Parser& p = client.parser;
  if (p.type == static_cast<std::uint8_t>(FrameType::kIdentityReply)) {
    if (client.state == State::kIdentifying) {
      shared_.ids[global(conn)].store(codec::load_u64(p.meta), std::memory_order_release);
      client.state = State::kReady;
      tally_.identified.fetch_add(1, std::memory_order_relaxed);
      shared_.settled.fetch_add(1, std::memory_order_acq_rel);
    }
    return true;
  }
  if (p.type == static_cast<std::uint8_t>(FrameType::kError)) {
    ++tally_.hub_errors;
    ++client.error_frames;
    client.last_error = p.meta[0];
    tally_.note_failure(
        fmt::format("client {}: ERROR {} `{}`", global(conn), p.meta[0],
                    std::string_view(reinterpret_cast<const char*>(p.meta + 1), p.meta_len - 1)));
    return true;  // the hub closes the connection after it
  }
  const std::uint64_t sender_id = codec::load_u64(p.meta);
  const payload::BodyHeader body = payload::decode(p.meta + protocol::kIdSize);
  const bool valid = body.magic == payload::kMagic && body.sender < settings_.clients &&
                     shared_.ids[body.sender].load(std::memory_order_relaxed) == sender_id &&
                     body.size == p.remaining + payload::kHeaderSize;
  if (!valid || !check_order(client, body.sender, body.seq)) {
    p.corrupt = true;
    tally_.note_failure(
        fmt::format("client {}: DELIVER from id {} has a bad header (sender {}, seq {}, size {})",
                    global(conn), sender_id, body.sender, body.seq, body.size));
  }
  p.key = payload::key(settings_.seed, body.sender, body.seq);
  p.sender = body.sender;
  p.seq = body.seq;
  p.position = 0;
  p.checksum_ok = !p.corrupt && body.checksum == expected_checksum(body.sender, body.seq, body.size);
  return true;
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
  Parser& p = client.parser;
  if (p.type != static_cast<std::uint8_t>(FrameType::kDeliver)) {
    return;  // the rest of an ERROR reason
  }
  if (!p.corrupt && !payload::matches(bytes, p.position, p.key)) {
    p.corrupt = true;
  }
  p.position += bytes.size();
}

void RelayDriver::end_frame(Conn& conn) {
  Client& client = clients_[conn.index];
  Parser& p = client.parser;
  if (p.type == static_cast<std::uint8_t>(FrameType::kDeliver)) {
    if (!p.corrupt && p.checksum_ok) {
      tally_.verified.fetch_add(1, std::memory_order_relaxed);
    } else {
      ++tally_.bad_deliveries;
      tally_.note_failure(
          fmt::format("client {}: a DELIVER's bytes differ from what was sent", global(conn)));
    }
    ++client.verified;  // arrived and checked, good or bad: "missing" is what never came
    shared_.in_flight.release(p.frame_bytes);
    client.arrived.push_back((std::uint64_t{p.sender} << 32) | p.seq);
    shared_.deliveries_verified.fetch_add(1, std::memory_order_relaxed);
  }
  p.head_len = 0;
  p.meta_len = 0;
  p.meta_need = 0;
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
  const Parser& p = client.parser;
  ReceiverView view;
  view.hub_id = shared_.ids[first_client_ + local].load(std::memory_order_relaxed);
  view.bytes_in = client.bytes_in;
  view.verified = client.verified;
  view.error_frames = client.error_frames;
  view.last_error = client.last_error;
  view.closed = client.closed;
  view.open_at_end = engine_.conn(local).phase != Phase::kIdle;
  view.last_bytes_ns = client.last_bytes_ns;
  view.mid_frame = p.head_len != 0;
  view.frame_type = p.type;
  view.frame_remaining = p.remaining;
  const bool header_seen = p.meta_need != 0 && p.meta_len == p.meta_need;
  view.frame_sender = header_seen ? p.sender : 0;
  view.frame_seq = header_seen ? p.seq : 0;
  return view;
}

void RelayDriver::protocol_failure(Conn& conn, const std::string& why) {
  ++tally_.bad_deliveries;
  give_up(conn, fmt::format("protocol failure: {}", why));
}

}  // namespace ringhub::stress
