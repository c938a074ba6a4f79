// BenchDriver: the publish/deliver workload of ringhub-perf on one client engine. K receivers subscribe
// (or, on ringhub, are named in every RELAY) and P publishers send S-byte messages, either with a bounded
// window in flight (saturating) or on a fixed schedule (latency). Receivers check every delivery: size,
// publisher, per-publisher sequence (loss, reordering, duplicates) and, on request, a checksum.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "perf/loadgen/payload_stamp.hpp"
#include "perf/loadgen/server_probe.hpp"
#include "perf/loadgen/wire.hpp"
#include "perf/stress/histogram.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::perf {

struct BenchSettings {
  Target target = Target::kRinghub;
  unsigned publishers = 4;
  unsigned fanout = 1;
  std::size_t size = 64;
  std::int64_t warmup_ns = 0;
  std::int64_t duration_ns = 0;
  double rate = 0;      // published messages/s over all publishers; 0: saturating
  unsigned window = 0;  // saturating: messages in flight per publisher
  bool checksum = false;
  int server_pid = 0;
  std::int64_t stall_ns = 0;             // no delivery for this long with messages in flight: the run fails
  std::int64_t drain_timeout_ns = 0;     // after the measured window, how long stragglers may take
  std::int64_t greeting_timeout_ns = 0;  // every connection must be ready this soon after start()
};

// What a run measured; counts cover the measured window unless they say otherwise.
struct BenchResult {
  double seconds = 0;  // the measured window's actual length
  std::uint64_t published = 0;
  std::uint64_t delivered = 0;
  std::uint64_t delivered_bytes = 0;
  stress::LatencyHistogram latency;  // publish (or, at a fixed rate, its due time) to delivery
  std::optional<ServerSample> server_start;
  std::optional<ServerSample> server_end;
  // ringhub-perf's own process over the same window: with the server's figure, which side was busy.
  std::optional<ServerSample> load_start;
  std::optional<ServerSample> load_end;
  // Whole run, checked after the drain.
  std::uint64_t expected_total = 0;
  std::uint64_t delivered_total = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t corrupt = 0;
  std::uint64_t lost = 0;
  bool rate_kept = true;  // fixed rate: the schedule never fell behind by more than the in-flight cap
  std::vector<std::string> errors;
  bool ok() const {
    return errors.empty() && lost == 0 && out_of_order == 0 && duplicates == 0 && corrupt == 0;
  }
};

// Contract: lives on the engine's thread; the engine has fanout + publishers connection slots.
class BenchDriver final : public uring::ClientDriver, public WireEvents {
 public:
  BenchDriver(uring::ClientLoop& engine, const BenchSettings& settings);
  void start();  // connects everyone
  BenchResult& result() { return result_; }

  // uring::ClientDriver
  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  void on_iteration() override;
  bool finished() const override { return phase_ == Phase::kDone; }

  // WireEvents
  void on_ready(std::uint32_t conn, std::uint64_t id) override;
  void on_message_begin(std::uint32_t conn, std::uint64_t origin, std::size_t size) override;
  void on_message_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) override;
  void on_message_end(std::uint32_t conn) override;
  void on_publish_ack(std::uint32_t conn, std::int64_t receivers) override;
  void on_reply(std::uint32_t conn, std::string_view bytes) override;
  void on_protocol_error(std::uint32_t conn, std::string_view what) override;

 private:
  enum class Phase : std::uint8_t { kGreeting, kWarmup, kMeasure, kDrain, kDone };

  // The delivery a receiver is reading now.
  struct Incoming {
    std::uint32_t publisher = UINT32_MAX;  // UINT32_MAX: not one of ours
    std::size_t size = 0;
    std::size_t got = 0;
    std::uint8_t stamp[kStampSize] = {};
    std::uint64_t fnv = kFnvBasis;
  };
  struct Receiver {
    bool ready = false;
    std::unique_ptr<StreamParser> parser;
    std::vector<std::uint64_t> next_seq;  // per publisher
    Incoming in;
    std::uint64_t last_origin = UINT64_MAX;  // ringhub: the last sender id seen and its publisher index
    std::uint32_t last_publisher = UINT32_MAX;
  };
  struct Publisher {
    bool ready = false;
    std::uint64_t id = 0;  // ringhub user id
    std::uint64_t sent = 0;
    std::uint64_t delivered = 0;  // deliveries of its messages, counted by the receivers
    std::int64_t next_due_ns = 0;
    std::unique_ptr<StreamParser> parser;
    PublishFraming framing;
  };

  bool is_receiver(std::uint32_t conn) const { return conn < settings_.fanout; }
  Publisher& publisher_at(std::uint32_t conn) { return publishers_[conn - settings_.fanout]; }
  std::uint64_t delivered_total() const;
  std::uint64_t published_total() const;

  void receiver_ready(Receiver& receiver, std::uint64_t id);
  void maybe_begin();
  void build_framing();
  void enter_measure(std::int64_t now);
  void enter_drain(std::int64_t now);
  void finish_run();
  void fail(std::string what);
  void advance_phase(std::int64_t now);
  void check_stall(std::int64_t now);
  void publish_saturating();
  void publish_scheduled(std::int64_t now);
  void publish_one(Publisher& publisher, std::uint32_t index, std::int64_t stamp_ns);
  void check_delivery(std::uint32_t receiver_index, Receiver& receiver);
  void arm_wakeup(std::int64_t due_ns);

  uring::ClientLoop& engine_;
  BenchSettings settings_;
  BenchResult result_;
  Phase phase_ = Phase::kGreeting;
  std::vector<Receiver> receivers_;
  std::vector<Publisher> publishers_;
  std::unordered_map<std::uint64_t, std::uint32_t> publisher_by_id_;  // ringhub ids -> index
  std::vector<std::uint64_t> receiver_ids_;
  std::vector<std::uint8_t> filler_;  // a message body template without its stamp
  std::uint32_t ready_count_ = 0;
  std::int64_t phase_end_ns_ = 0;  // greeting: its deadline; then the end of the current phase
  std::int64_t measure_start_ns_ = 0;
  std::int64_t schedule_origin_ns_ = 0;  // fixed rate: when every publisher's schedule started
  std::int64_t batch_now_ns_ = 0;        // taken once per received buffer: the arrival time of its deliveries
  std::uint64_t delivered_at_start_ = 0;
  std::uint64_t published_at_start_ = 0;
  std::uint64_t bytes_at_start_ = 0;
  std::uint64_t delivered_bytes_ = 0;
  std::uint64_t last_progress_count_ = 0;
  std::int64_t last_progress_ns_ = 0;
  std::int64_t wakeup_due_ns_ = INT64_MAX;
  std::uint64_t inflight_cap_ = 0;       // fixed rate: messages in flight per publisher before it waits
  std::uint64_t per_iteration_cap_ = 0;  // fixed rate: messages per publisher per loop iteration
  bool measuring_latency_ = false;
};

}  // namespace ringhub::perf
