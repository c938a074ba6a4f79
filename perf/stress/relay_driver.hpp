// RelayDriver: --mode relay. Every client asks IDENTITY; once all have ids, each engine plans and sends
// its senders' RELAYs (fan-out 1..255, log-uniform sizes) and every receiver verifies each DELIVER byte for
// byte, in sender order, exactly once. When main sees all verified (or a stall), everyone closes.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <span>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clients/cpp/async_relay_client.hpp"
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

// A user of the client library: each engine thread is one AsyncRelayClient with streamed deliveries.
// Contract: constructed anywhere; init() and run() on its engine's thread, the rest after it joined.
// Clients [first, first + options.connections) of the run.
class RelayDriver final : private client::RelayEvents {
 public:
  RelayDriver(client::AsyncRelayOptions options, const RelaySettings& settings, RelayShared& shared,
              std::uint32_t first_client, Tally& tally);
  Result<void> init();  // makes the ring, on the thread that will run it
  // Starts every client at a uniform time in [start_ns, start_ns + ramp), serves until main says close
  // (or `deadline_ns` or *abort), then compares what each receiver verified with what was planned.
  void run(std::int64_t start_ns, std::int64_t deadline_ns, const std::atomic<bool>& abort);
  // Null before init(); read by other threads for progress (its figures are atomics).
  const uring::ClientLoopStats* stats() const { return client_ ? &client_->stats() : nullptr; }

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

 private:
  // client::RelayEvents
  void on_open(std::uint32_t conn) override;
  void on_identity(std::uint32_t conn, protocol::UserId id) override;
  void on_list(std::uint32_t conn, std::span<const protocol::UserId> others) override;
  void on_delivery(std::uint32_t conn, protocol::UserId sender, std::span<const std::uint8_t> body) override;
  void on_delivery_begin(std::uint32_t conn, protocol::UserId sender, std::uint32_t size) override;
  void on_delivery_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) override;
  void on_delivery_end(std::uint32_t conn) override;
  void on_hub_error(std::uint32_t conn, std::uint8_t code, std::string_view reason) override;
  void on_closed(std::uint32_t conn, const Error& why) override;
  void on_sent(std::uint32_t conn) override;
  void on_read(std::uint32_t conn, std::size_t bytes) override;
  void on_timer(std::uint32_t conn, std::uint32_t kind) override;
  void on_iteration() override;

  enum class State : std::uint8_t { kWaiting, kConnecting, kIdentifying, kReady, kBackoff, kDone, kFailed };
  enum TimerKind : std::uint32_t { kStart, kRetry };

  // The DELIVER a receiver is reading: its body's payload header is gathered, the rest checked as it
  // streams in (the library's core/client_frame_reader cuts the frames).
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
    Delivering delivering;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> last_seq;  // (sender, last seq seen)
    // For the missing-delivery report: every (sender << 32 | seq) that arrived, and how the wire went.
    std::vector<std::uint64_t> arrived;
    std::uint64_t bytes_in = 0;
    std::int64_t last_bytes_ns = 0;
    std::uint32_t error_frames = 0;
    std::uint8_t last_error = 0;
  };

  std::uint32_t global(std::uint32_t conn) const { return first_client_ + conn; }
  void schedule_starts(std::int64_t start_ns);
  void start_attempt(std::uint32_t conn);
  void finalize();
  void plan();
  void plan_one(std::uint32_t local, const std::vector<std::uint32_t>& pool);
  void pump_senders();
  // Reserves the delivery bytes of local sender's next relay in the shared window; false when it is
  // full (a relay alone in it always fits, however large).
  bool reserve_in_flight(std::uint32_t local);
  void build_frame(std::uint32_t conn);
  void close_everyone();
  void on_meta(std::uint32_t conn);
  void on_payload(Client& client, std::span<const std::uint8_t> bytes);
  bool check_order(Client& client, std::uint32_t sender, std::uint32_t seq);
  // The checksum sender's relay seq must carry, computed once per relay (not per receiver): every
  // payload byte is compared with the generator as it streams in, so a checksum over the received
  // bytes would only repeat that check at a byte a cycle, most of the harness's CPU at 255-way fan-out.
  std::uint64_t expected_checksum(std::uint32_t sender, std::uint32_t seq, std::uint32_t size);
  void protocol_failure(std::uint32_t conn, const std::string& why);
  void give_up(std::uint32_t conn, const std::string& why);

  client::AsyncRelayOptions options_;
  std::unique_ptr<client::AsyncRelayClient> client_;
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
  std::vector<protocol::UserId> receiver_ids_;  // scratch: one RELAY's receivers
  std::uint32_t route_cursor_ = 0;              // spreads attempts over every (hub, source) pair
  std::uint32_t stamp_now_ = 0;
  unsigned frames_in_flight_ = 0;
  bool planned_ = false;
  bool closing_ = false;
};

}  // namespace ringhub::stress
