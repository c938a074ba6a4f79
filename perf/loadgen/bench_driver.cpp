// BenchDriver: greeting, the warm-up / measure / drain phases, the two publishing disciplines and the
// per-delivery checks. Everything runs on the engine thread; the only clock reads are one per loop
// iteration (publishing) and one per received buffer (arrival time).
#include "perf/loadgen/bench_driver.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "perf/loadgen/payload_stamp.hpp"

namespace ringhub::perf {

namespace {

constexpr std::uint32_t kWakeTimer = 1;
// Fixed rate: a publisher with this many delivery bytes (size x fan-out) outstanding waits for
// deliveries instead of queueing more, so an overloaded server shows up as latency (and rate_kept =
// false), not as client memory, and no receiver's backlog nears a server's slow-consumer limit (64 MiB
// in ringhub and NATS): 4 publishers x 8 MiB stays under it.
constexpr std::size_t kScheduledInFlightBytes = std::size_t{8} << 20;
constexpr std::uint64_t kScheduledInFlightMax = 65536;
// Fixed rate: messages one publisher frames per loop iteration at most. A load generator that fell
// behind would otherwise spend ever longer iterations catching up while its receivers go unread (a
// spiral that ended in ringhub's slow-consumer ERROR); the due-time stamps still charge the wait.
constexpr std::size_t kScheduledBytesPerIteration = std::size_t{256} << 10;
constexpr std::uint64_t kScheduledMessagesPerIteration = 256;

}  // namespace

BenchDriver::BenchDriver(uring::ClientLoop& engine, const BenchSettings& settings)
    : engine_(engine), settings_(settings), receivers_(settings.fanout), publishers_(settings.publishers) {
  for (std::uint32_t i = 0; i < engine_.size(); ++i) {
    auto parser = make_parser(settings_.target, i);
    if (is_receiver(i)) {
      receivers_[i].parser = std::move(parser);
      receivers_[i].next_seq.assign(settings_.publishers, 0);
    } else {
      publisher_at(i).parser = std::move(parser);
    }
  }
  receiver_ids_.resize(settings_.fanout);
  filler_.resize(settings_.size);
  for (std::size_t i = 0; i < filler_.size(); ++i) {
    filler_[i] = filler_byte(0, i);
  }
  const std::size_t delivery_bytes = std::max<std::size_t>(settings_.size, 1) * settings_.fanout;
  inflight_cap_ =
      std::clamp<std::uint64_t>(kScheduledInFlightBytes / delivery_bytes, 1, kScheduledInFlightMax);
  per_iteration_cap_ =
      std::clamp<std::uint64_t>(kScheduledBytesPerIteration / std::max<std::size_t>(settings_.size, 1), 1,
                                kScheduledMessagesPerIteration);
}

void BenchDriver::start() {
  phase_end_ns_ = uring::now_ns() + settings_.greeting_timeout_ns;
  arm_wakeup(phase_end_ns_);
  for (std::uint32_t i = 0; i < engine_.size(); ++i) {
    engine_.connect(engine_.conn(i));
  }
}

std::uint64_t BenchDriver::delivered_total() const {
  std::uint64_t total = 0;
  for (const Publisher& p : publishers_) {
    total += p.delivered;
  }
  return total;
}

std::uint64_t BenchDriver::published_total() const {
  std::uint64_t total = 0;
  for (const Publisher& p : publishers_) {
    total += p.sent;
  }
  return total;
}

// ---- connections and greetings

void BenchDriver::on_connected(uring::ClientConn& conn) {
  const Role role = is_receiver(conn.index) ? Role::kReceiver : Role::kPublisher;
  append_greeting(settings_.target, role, settings_.publishers, engine_.out(conn));
  engine_.flush(conn);
}

void BenchDriver::on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) {
  batch_now_ns_ = uring::now_ns();
  StreamParser& parser =
      is_receiver(conn.index) ? *receivers_[conn.index].parser : *publisher_at(conn.index).parser;
  parser.feed(bytes, *this);
}

void BenchDriver::on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) {
  if (phase_ == Phase::kDone || info.requested) {
    return;
  }
  const char* role = is_receiver(conn.index) ? "receiver" : "publisher";
  fail(info.was_open
           ? fmt::format("{} {} was closed by the server ({})", role, conn.index,
                         info.eof ? "EOF" : std::strerror(info.error))
           : fmt::format("{} {} could not connect: {}", role, conn.index, std::strerror(info.error)));
}

void BenchDriver::on_ready(std::uint32_t conn, std::uint64_t id) {
  if (is_receiver(conn)) {
    receiver_ids_[conn] = id;  // before receiver_ready: the last one ready builds the RELAY framing
    receiver_ready(receivers_[conn], id);
    return;
  }
  Publisher& publisher = publisher_at(conn);
  if (!publisher.ready) {
    publisher.ready = true;
    publisher.id = id;
    publisher_by_id_[id] = conn - settings_.fanout;
    ++ready_count_;
    maybe_begin();
  }
}

// Redis confirms each SUBSCRIBE channel with the running count: ready once it names every publisher.
void BenchDriver::receiver_ready(Receiver& receiver, std::uint64_t id) {
  const bool complete = settings_.target != Target::kRedis || id == settings_.publishers;
  if (!receiver.ready && complete) {
    receiver.ready = true;
    ++ready_count_;
    maybe_begin();
  }
}

void BenchDriver::maybe_begin() {
  if (ready_count_ < engine_.size() || phase_ != Phase::kGreeting) {
    return;
  }
  build_framing();
  const std::int64_t now = uring::now_ns();
  wakeup_due_ns_ = INT64_MAX;  // the greeting deadline's timer is moot
  phase_ = Phase::kWarmup;
  phase_end_ns_ = now + settings_.warmup_ns;
  last_progress_ns_ = now;
  arm_wakeup(phase_end_ns_);
  if (settings_.rate > 0) {
    const double interval = 1e9 * settings_.publishers / settings_.rate;
    schedule_origin_ns_ = now;
    for (unsigned p = 0; p < publishers_.size(); ++p) {
      publishers_[p].next_due_ns = now + static_cast<std::int64_t>(interval * p / settings_.publishers);
    }
  }
}

void BenchDriver::build_framing() {
  for (unsigned p = 0; p < publishers_.size(); ++p) {
    publishers_[p].framing = publish_framing(settings_.target, p, receiver_ids_, settings_.size);
  }
}

// ---- phases

void BenchDriver::on_timer(const uring::ClientTimer& timer) {
  if (timer.kind == kWakeTimer) {
    wakeup_due_ns_ = INT64_MAX;  // on_iteration, right after, arms the next one
  }
}

void BenchDriver::arm_wakeup(std::int64_t due_ns) {
  if (due_ns < wakeup_due_ns_) {
    wakeup_due_ns_ = due_ns;
    engine_.add_timer(uring::ClientTimer{due_ns, 0, 0, kWakeTimer, 0});
  }
}

void BenchDriver::on_iteration() {
  if (phase_ == Phase::kDone) {
    return;
  }
  const std::int64_t now = uring::now_ns();
  if (phase_ == Phase::kGreeting) {
    if (now >= phase_end_ns_) {
      fail(fmt::format("only {} of {} connections were ready after {:.1f} s", ready_count_, engine_.size(),
                       static_cast<double>(settings_.greeting_timeout_ns) / 1e9));
    }
    return;
  }
  advance_phase(now);
  if (phase_ == Phase::kWarmup || phase_ == Phase::kMeasure) {
    settings_.rate > 0 ? publish_scheduled(now) : publish_saturating();
    arm_wakeup(phase_end_ns_);
  }
  if (phase_ != Phase::kDone) {
    check_stall(now);
  }
}

void BenchDriver::advance_phase(std::int64_t now) {
  if (phase_ == Phase::kWarmup && now >= phase_end_ns_) {
    enter_measure(now);
  } else if (phase_ == Phase::kMeasure && now >= phase_end_ns_) {
    enter_drain(now);
  } else if (phase_ == Phase::kDrain &&
             (delivered_total() >= published_total() * settings_.fanout || now >= phase_end_ns_)) {
    finish_run();
  }
}

void BenchDriver::enter_measure(std::int64_t now) {
  phase_ = Phase::kMeasure;
  result_.server_start = sample_server(settings_.server_pid);
  result_.load_start = sample_server(::getpid());
  result_.latency = stress::LatencyHistogram{};
  measuring_latency_ = true;
  delivered_at_start_ = delivered_total();
  published_at_start_ = published_total();
  bytes_at_start_ = delivered_bytes_;
  measure_start_ns_ = now;
  phase_end_ns_ = now + settings_.duration_ns;
}

void BenchDriver::enter_drain(std::int64_t now) {
  result_.server_end = sample_server(settings_.server_pid);
  result_.load_end = sample_server(::getpid());
  measuring_latency_ = false;
  result_.seconds = static_cast<double>(now - measure_start_ns_) / 1e9;
  result_.published = published_total() - published_at_start_;
  result_.delivered = delivered_total() - delivered_at_start_;
  result_.delivered_bytes = delivered_bytes_ - bytes_at_start_;
  phase_ = Phase::kDrain;
  phase_end_ns_ = now + settings_.drain_timeout_ns;
  arm_wakeup(phase_end_ns_);
}

void BenchDriver::finish_run() {
  result_.expected_total = published_total() * settings_.fanout;
  result_.delivered_total = delivered_total();
  if (result_.delivered_total < result_.expected_total) {
    result_.lost = result_.expected_total - result_.delivered_total;
  }
  phase_ = Phase::kDone;
  for (std::uint32_t i = 0; i < engine_.size(); ++i) {
    engine_.close(engine_.conn(i));
  }
}

void BenchDriver::fail(std::string what) {
  if (phase_ == Phase::kDone) {
    return;
  }
  result_.errors.push_back(std::move(what));
  if (phase_ == Phase::kMeasure) {
    enter_drain(uring::now_ns());
  }
  finish_run();
}

void BenchDriver::check_stall(std::int64_t now) {
  const std::uint64_t delivered = delivered_total();
  const std::uint64_t expected = published_total() * settings_.fanout;
  if (delivered != last_progress_count_ || delivered >= expected) {
    last_progress_count_ = delivered;
    last_progress_ns_ = now;
    return;
  }
  if (now - last_progress_ns_ > settings_.stall_ns) {
    fail(fmt::format("no delivery for {:.1f} s with {} deliveries outstanding",
                     static_cast<double>(now - last_progress_ns_) / 1e9, expected - delivered));
  }
}

// ---- publishing

void BenchDriver::publish_saturating() {
  const std::int64_t now = uring::now_ns();
  const std::uint64_t fanout = settings_.fanout;
  for (std::uint32_t p = 0; p < publishers_.size(); ++p) {
    Publisher& publisher = publishers_[p];
    const std::uint64_t outstanding = (publisher.sent * fanout - publisher.delivered + fanout - 1) / fanout;
    if (outstanding >= settings_.window) {
      continue;
    }
    for (std::uint64_t n = settings_.window - outstanding; n > 0; --n) {
      publish_one(publisher, p, now);
    }
    engine_.flush(engine_.conn(settings_.fanout + p));
  }
}

// Each publisher's k-th message is due at start + (p / P + k) * interval; its stamp is that due time, so
// a server that falls behind is charged the full wait (no coordinated omission).
void BenchDriver::publish_scheduled(std::int64_t now) {
  const std::uint64_t fanout = settings_.fanout;
  std::int64_t next_due = INT64_MAX;
  const double interval = 1e9 * settings_.publishers / settings_.rate;
  for (std::uint32_t p = 0; p < publishers_.size(); ++p) {
    Publisher& publisher = publishers_[p];
    bool wrote = false;
    for (std::uint64_t n = 0; publisher.next_due_ns <= now && n < per_iteration_cap_; ++n) {
      if (publisher.sent - publisher.delivered / fanout >= inflight_cap_) {
        result_.rate_kept = false;
        break;
      }
      publish_one(publisher, p, publisher.next_due_ns);
      wrote = true;
      const auto offset = static_cast<double>(publisher.sent) + static_cast<double>(p) / settings_.publishers;
      publisher.next_due_ns = schedule_origin_ns_ + static_cast<std::int64_t>(offset * interval);
    }
    if (wrote) {
      engine_.flush(engine_.conn(settings_.fanout + p));
    }
    next_due = std::min(next_due, publisher.next_due_ns);
  }
  arm_wakeup(next_due);
}

// Frames one message into the publisher's send buffer: framing prefix, stamp, filler, framing suffix.
void BenchDriver::publish_one(Publisher& publisher, std::uint32_t index, std::int64_t stamp_ns) {
  std::vector<std::uint8_t>& out = engine_.out(engine_.conn(settings_.fanout + index));
  const PublishFraming& framing = publisher.framing;
  // Appended by insert, not resize: resize would zero every byte before the copy overwrites it, a
  // second pass over each body that took 7% of the load generator's core at 1 MiB.
  out.insert(out.end(), framing.prefix.begin(), framing.prefix.end());
  const std::size_t body_at = out.size();
  out.insert(out.end(), filler_.begin(), filler_.end());  // settings_.size bytes
  out.insert(out.end(), framing.suffix.begin(), framing.suffix.end());
  std::uint8_t* body = out.data() + body_at;
  if (settings_.size >= kStampSize) {
    Stamp stamp;
    stamp.publisher = index;
    stamp.seq = publisher.sent;
    stamp.sent_ns = stamp_ns;
    if (settings_.checksum) {
      for (std::size_t i = kStampSize; i < settings_.size; ++i) {
        body[i] = filler_byte(stamp.seq, i);
      }
      stamp.checksum = fnv1a(kFnvBasis, {body + kStampSize, settings_.size - kStampSize});
    }
    store_stamp(body, stamp);
  }
  ++publisher.sent;
}

// ---- receiving

void BenchDriver::on_message_begin(std::uint32_t conn, std::uint64_t origin, std::size_t size) {
  if (!is_receiver(conn)) {
    fail(fmt::format("publisher {} received a message", conn));
    return;
  }
  Receiver& receiver = receivers_[conn];
  std::uint32_t publisher = UINT32_MAX;
  if (settings_.target != Target::kRinghub) {
    publisher = origin < publishers_.size() ? static_cast<std::uint32_t>(origin) : UINT32_MAX;
  } else if (origin == receiver.last_origin) {  // runs of one sender's deliveries are the common case
    publisher = receiver.last_publisher;
  } else {
    const auto found = publisher_by_id_.find(origin);
    publisher = found == publisher_by_id_.end() ? UINT32_MAX : found->second;
    receiver.last_origin = origin;
    receiver.last_publisher = publisher;
  }
  receiver.in = Incoming{.publisher = publisher, .size = size};
}

void BenchDriver::on_message_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) {
  if (!is_receiver(conn)) {
    return;
  }
  Incoming& in = receivers_[conn].in;
  std::size_t stamp_part = 0;
  if (in.got < kStampSize) {
    stamp_part = std::min(kStampSize - in.got, bytes.size());
    std::memcpy(in.stamp + in.got, bytes.data(), stamp_part);
  }
  if (settings_.checksum) {
    in.fnv = fnv1a(in.fnv, bytes.subspan(stamp_part));
  }
  in.got += bytes.size();
  delivered_bytes_ += bytes.size();
}

void BenchDriver::on_message_end(std::uint32_t conn) {
  if (!is_receiver(conn)) {
    return;
  }
  Receiver& receiver = receivers_[conn];
  check_delivery(conn, receiver);
  if (receiver.in.publisher != UINT32_MAX) {
    ++publishers_[receiver.in.publisher].delivered;
  }
}

void BenchDriver::check_delivery(std::uint32_t receiver_index, Receiver& receiver) {
  const Incoming& in = receiver.in;
  if (in.publisher == UINT32_MAX || in.size != settings_.size || in.got != in.size) {
    ++result_.corrupt;
    return;
  }
  std::uint64_t& next = receiver.next_seq[in.publisher];
  if (settings_.size < kStampSize) {
    ++next;  // too short for a stamp: counted, not sequenced
    return;
  }
  const Stamp stamp = load_stamp(in.stamp);
  if (stamp.magic != kStampMagic || stamp.publisher != in.publisher ||
      (settings_.checksum && stamp.checksum != in.fnv)) {
    ++result_.corrupt;
    return;
  }
  if (stamp.seq < next) {
    ++result_.duplicates;
    return;
  }
  if (stamp.seq > next) {
    ++result_.out_of_order;  // a gap: lost or reordered; the drain's count tells which
    if (result_.errors.size() < 4) {
      result_.errors.push_back(fmt::format("receiver {} expected seq {} of publisher {}, got {}",
                                           receiver_index, next, in.publisher, stamp.seq));
    }
  }
  next = stamp.seq + 1;
  if (measuring_latency_) {
    result_.latency.record(batch_now_ns_ - stamp.sent_ns);
  }
}

void BenchDriver::on_publish_ack(std::uint32_t conn, std::int64_t receivers) {
  if (receivers != static_cast<std::int64_t>(settings_.fanout)) {
    fail(fmt::format("publisher {}: PUBLISH reached {} subscribers, not {}", conn, receivers,
                     settings_.fanout));
  }
}

void BenchDriver::on_reply(std::uint32_t conn, std::string_view bytes) {
  engine_.send(engine_.conn(conn), bytes);
}

void BenchDriver::on_protocol_error(std::uint32_t conn, std::string_view what) {
  fail(fmt::format("{} {}: {}", is_receiver(conn) ? "receiver" : "publisher", conn, what));
}

}  // namespace ringhub::perf
