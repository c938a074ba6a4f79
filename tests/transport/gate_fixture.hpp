// Test support for the shard's read-side rules without a ring (transport/memory_gate,
// transport/read_policy): a one-shard hub's shared state with a small budget, its gate, and
// connections made as the shard makes them, one of them with a large frame begun.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"
#include "core/shared_block.hpp"
#include "transport/connection.hpp"
#include "transport/hub_shared.hpp"
#include "transport/memory_gate.hpp"

namespace ringhub::gate_testing {

inline constexpr std::size_t kBudget = 64U << 20;
inline constexpr std::uint32_t kDirectThreshold = 64U << 10;
inline constexpr unsigned kOneShard = 1;
inline constexpr unsigned kTableSize = 16;
inline constexpr std::size_t kDirectorySlots = 16;

inline HubConfig config_with_budget(std::size_t budget) {
  HubConfig config;
  config.max_memory = budget;
  return config;
}

// Records which connections the gate let in, in order.
struct ResumedLog final : GateEvents {
  void on_resumed(Connection& conn) override { resumed.push_back(&conn); }
  std::vector<Connection*> resumed;
};

class GateFixture : public ::testing::Test {
 protected:
  GateFixture() : shared_(config_, kOneShard, kTableSize, kDirectorySlots, HashKey{}), gate_(shared_, log_) {
    accounting_.memory = &shared_.memory[0];
    accounting_.direct_threshold = kDirectThreshold;
  }

  // Hub memory charged now: the figure the next update() reads. Assembly blocks of begun frames charge
  // the same account on top (a few hundred bytes): no assertion sits that close to a watermark.
  void set_memory_in_use(std::size_t bytes) { shared_.memory[0].recharge(charged_, bytes); }

  std::unique_ptr<Connection> connection(bool heavy = false) {
    auto conn = std::make_unique<Connection>(next_slot_++, &accounting_, &shared_.memory[0]);
    conn->heavy = heavy;
    return conn;
  }

  // A connection that has begun a RELAY whose frame is `frame_bytes` long and sent only its first bytes.
  std::unique_ptr<Connection> begun_large_frame(std::uint32_t frame_bytes) {
    auto conn = connection(true);
    const std::vector<protocol::UserId> receivers{7};
    std::vector<std::uint8_t> frame;
    codec::append_relay(frame, receivers,
                        std::vector<std::uint8_t>(frame_bytes - frame_size_of_empty_relay()));
    constexpr std::uint32_t kSent = 64;
    BlockRef input = HeapBlock::create(kSent);
    std::copy_n(frame.begin(), kSent, input.data());
    conn->assembler.feed(input, 0, kSent, [](FrameView&&) { return true; });
    return conn;
  }

  static std::uint32_t frame_size_of_empty_relay() {
    std::vector<std::uint8_t> frame;
    codec::append_relay(frame, std::vector<protocol::UserId>{7}, {});
    return static_cast<std::uint32_t>(frame.size());
  }

  std::int64_t reserved() const { return shared_.frame_reservations.load(); }
  std::int64_t frames_under_way() const { return shared_.large_frames_under_way.load(); }

  HubConfig config_ = config_with_budget(kBudget);
  HubShared shared_;
  ResumedLog log_;
  MemoryGate gate_;
  AssemblyAccounting accounting_;
  std::size_t charged_ = 0;
  std::uint32_t next_slot_ = 0;
};

}  // namespace ringhub::gate_testing
