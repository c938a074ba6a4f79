// RelayDriver: --mode relay. Every client asks IDENTITY; once all have ids, each engine plans and sends
// its senders' RELAYs (fan-out 1..255, log-uniform sizes) and every receiver verifies each DELIVER byte for
// byte, in sender order, exactly once. When main sees all verified (or a stall), everyone closes.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/client_frame_reader.hpp"
#include "perf/stress/in_flight_window.hpp"
#include "perf/stress/payload.hpp"
#include "perf/stress/tally.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::stress {

struct RelaySettings {
  std::uint32_t clients = 0;
  unsigned relays_per_sender = 0;
  std::uint32_t max_size = 0;  // body bytes, payload header included
  unsigned max_fanout = 0;
  unsigned retries = 0;
  std::int64_t ramp_ns = 0;
  std::uint64_t seed = 0;  // payload keys: receivers regenerate the bytes from it
};

// State the engines share; each field says who writes it.
struct RelayShared {
  explicit RelayShared(std::uint32_t clients) : ids(clients), expected(clients), is_sender(clients, 0) {}

  std::vector<std::atomic<std::uint64_t>> ids;       // hub id per client once identified (its engine)
  std::vector<std::atomic<std::uint32_t>> expected;  // deliveries planned per receiver (any planner)
  std::vector<std::uint8_t> is_sender;               // chosen by main before the engines start
  std::atomic<std::uint32_t> settled{0};             // clients identified or given up
  std::atomic<std::uint32_t> planners_done{0};       // engines that planned their senders
  std::atomic<std::uint64_t> relays_planned{0};
  std::atomic<std::uint64_t> deliveries_expected{0};
  std::atomic<std::uint64_t> bytes_expected{0};       // body bytes x fan-out
  std::atomic<std::uint64_t> deliveries_verified{0};  // including bad ones: "arrived and checked"
  std::atomic<std::uint64_t> bytes_received{0};       // every byte any client received: progress
  InFlightWindow in_flight;            // DELIVER bytes of RELAYs started, not yet received (any engine)
  std::atomic<bool> close_now{false};  // set by main: everyone closes
};

// Contract: lives on its engine's thread; clients [first, first + engine.size()) of the run.
class RelayDriver final : public uring::ClientDriver {
 public:
  RelayDriver(uring::ClientLoop& engine, const RelaySettings& settings, RelayShared& shared,
              std::uint32_t first_client, Tally& tally);
  void schedule_starts(std::int64_t start_ns);
  // After the engine returned: compares what each receiver verified with what was planned for it.
  void finalize();

  // What one receiver's connection saw, for the report on missing deliveries.
  struct ReceiverView {
    std::uint64_t hub_id = 0;
    std::uint64_t bytes_in = 0;  // bytes its connections received, every frame included
    std::uint32_t verified = 0;  // DELIVERs that arrived (and were checked)
    std::uint32_t error_frames = 0;
    std::uint8_t last_error = 0;  // code of the last ERROR frame
    uring::CloseInfo closed;      // how its last connection ended
    bool open_at_end = false;     // the engine stopped with its connection still open or closing
    std::int64_t last_bytes_ns = 0;
    bool mid_frame = false;  // its parser stopped inside a frame
    std::uint8_t frame_type = 0;
    std::uint32_t frame_remaining = 0;  // payload bytes of that frame still to come
    std::uint32_t frame_sender = 0;     // DELIVER: the frame's sender client and seq, once its header came
    std::uint32_t frame_seq = 0;
  };
  // A relay as planned: its sender (client number), sequence number (from 1), body size, receivers.
  template <typename Visit>
  void for_each_planned(Visit visit) const {
    for (std::uint32_t i = 0; i < plans_.size(); ++i) {
      for (std::uint32_t r = 0; r < plans_[i].size(); ++r) {
        visit(first_client_ + i, r + 1, plans_[i][r].size, plans_[i][r].receivers,
              r < clients_[i].next_relay);
      }
    }
  }
  bool received(std::uint32_t local, std::uint32_t sender, std::uint32_t seq) const;
  ReceiverView receiver(std::uint32_t local) const;
  std::uint32_t first_client() const { return first_client_; }
  std::uint32_t size() const { return static_cast<std::uint32_t>(clients_.size()); }

  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_drained(uring::ClientConn& conn) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override;
  void on_iteration() override;
  bool finished() const override { return closing_; }

 private:
  enum class State : std::uint8_t { kWaiting, kConnecting, kIdentifying, kReady, kBackoff, kDone, kFailed };
  enum TimerKind : std::uint32_t { kStart, kRetry };

  // The DELIVER a receiver is reading: its body's payload header is gathered, the rest checked as it
  // streams in (core/client_frame_reader cuts the frames).
  struct Delivering {
    std::uint8_t meta[payload::kHeaderSize] = {};
    std::uint8_t meta_len = 0;
    bool corrupt = false;
    std::uint64_t sender_id = 0;    // the hub's id of the sender
    std::uint32_t size = 0;         // body bytes, payload header included
    std::uint64_t key = 0;          // payload key of the DELIVER being read
    std::uint64_t position = 0;     // offset into its payload (after the payload header)
    bool checksum_ok = false;       // the header's checksum is the one the sender computed
    bool open = false;              // begun and not yet ended (the missing-delivery report)
    std::uint32_t frame_bytes = 0;  // the whole frame, header included: released from the window
    std::uint32_t sender = 0;       // the payload header's sender and seq
    std::uint32_t seq = 0;
  };
  // Turns one connection's hub frames into the driver's checks; ignores what comes after a failure.
  struct Receiving;

  struct Planned {
    std::vector<std::uint32_t> receivers;  // client numbers (kept after sending: the missing-delivery report)
    std::uint32_t size = 0;
  };

  struct Client {
    State state = State::kWaiting;
    bool sending_frame = false;
    std::uint16_t attempts = 0;
    std::uint32_t next_relay = 0;  // index into plans_[i]
    std::uint32_t verified = 0;
    ClientFrameReader reader;
    Delivering delivering;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> last_seq;  // (sender, last seq seen)
    // For the missing-delivery report: every (sender << 32 | seq) that arrived, and how the wire went.
    std::vector<std::uint64_t> arrived;
    std::uint64_t bytes_in = 0;
    std::int64_t last_bytes_ns = 0;
    std::uint32_t error_frames = 0;
    std::uint8_t last_error = 0;
    uring::CloseInfo closed;
  };

  std::uint32_t global(const uring::ClientConn& conn) const { return first_client_ + conn.index; }
  void start_attempt(uring::ClientConn& conn);
  void plan();
  void plan_one(std::uint32_t local, const std::vector<std::uint32_t>& pool);
  void pump_senders();
  // Reserves the delivery bytes of local sender's next relay in the shared window; false when it is
  // full (a relay alone in it always fits, however large).
  bool reserve_in_flight(std::uint32_t local);
  void build_frame(uring::ClientConn& conn);
  void close_everyone();
  void on_identity_reply(uring::ClientConn& conn, std::uint64_t id);
  void on_deliver_begin(uring::ClientConn& conn, std::uint64_t sender_id, std::uint32_t size);
  void on_deliver_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes);
  void on_meta(uring::ClientConn& conn);
  void on_payload(Client& client, std::span<const std::uint8_t> bytes);
  void on_deliver_end(uring::ClientConn& conn);
  void on_hub_error(uring::ClientConn& conn, std::uint8_t code, std::string_view reason);
  bool check_order(Client& client, std::uint32_t sender, std::uint32_t seq);
  // The checksum sender's relay seq must carry, computed once per relay (not per receiver): every
  // payload byte is compared with the generator as it streams in, so a checksum over the received
  // bytes would only repeat that check at a byte a cycle, most of the harness's CPU at 255-way fan-out.
  std::uint64_t expected_checksum(std::uint32_t sender, std::uint32_t seq, std::uint32_t size);
  void protocol_failure(uring::ClientConn& conn, const std::string& why);
  void give_up(uring::ClientConn& conn, const std::string& why);

  uring::ClientLoop& engine_;
  const RelaySettings& settings_;
  RelayShared& shared_;
  const std::uint32_t first_client_;
  Tally& tally_;
  std::mt19937_64 rng_;
  std::vector<Client> clients_;
  std::vector<std::vector<Planned>> plans_;  // per local sender
  std::deque<std::uint32_t> ready_senders_;  // local senders with a relay to send and none in flight
  std::vector<std::uint32_t> stamp_;         // per client number: distinct-receiver sampling
  std::unordered_map<std::uint64_t, std::uint64_t> checksums_;  // (sender << 32 | seq) -> checksum
  std::vector<std::uint8_t> scratch_;
  std::uint32_t stamp_now_ = 0;
  unsigned frames_in_flight_ = 0;
  bool planned_ = false;
  bool closing_ = false;
};

}  // namespace ringhub::stress
