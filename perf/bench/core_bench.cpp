// Microbenchmarks of the pure hot-path pieces in core/: frame codec, fan-out planning, registry,
// line splitting, shared blocks and the outbound queue. Run: build/release/bin/ringhub-bench
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/fanout.hpp"
#include "core/frame_assembler.hpp"
#include "core/frame_codec.hpp"
#include "core/id_directory.hpp"
#include "core/line_protocol.hpp"
#include "core/outbound_queue.hpp"
#include "core/registry.hpp"
#include "core/shared_block.hpp"

namespace ringhub {
namespace {

using protocol::UserId;

std::vector<UserId> receiver_ids(std::size_t count) {
  std::vector<UserId> ids(count);
  for (std::size_t i = 0; i < count; ++i) {
    ids[i] = 1000 + i * 7;
  }
  return ids;
}

// Decode + validate one RELAY header and read its receiver list.
void BM_DecodeRelayHeader(benchmark::State& state) {
  const auto ids = receiver_ids(static_cast<std::size_t>(state.range(0)));
  const std::vector<std::uint8_t> body(64, 0x5A);
  std::vector<std::uint8_t> frame;
  codec::append_relay(frame, ids, body);
  for (auto _ : state) {
    const auto header = codec::decode_header(
        std::span<const std::uint8_t, protocol::kHeaderSize>(frame.data(), protocol::kHeaderSize));
    benchmark::DoNotOptimize(codec::validate_client_header(header));
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < header.count; ++i) {
      sum += codec::load_u64(frame.data() + protocol::kHeaderSize + protocol::kIdSize * i);
    }
    benchmark::DoNotOptimize(sum);
  }
}
BENCHMARK(BM_DecodeRelayHeader)->Arg(1)->Arg(16)->Arg(255);

// The in-place rewrite of a RELAY prefix into a DELIVER prefix.
void BM_EncodeDeliverPrefix(benchmark::State& state) {
  std::uint8_t prefix[protocol::kDeliverPrefixSize];
  UserId sender = 1;
  for (auto _ : state) {
    codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(prefix), ++sender, 64);
    benchmark::DoNotOptimize(prefix);
  }
}
BENCHMARK(BM_EncodeDeliverPrefix);

// Fan-out planning for K receivers spread over 4 shards (dedupe, self skip, directory routing).
void BM_FanoutPlan(benchmark::State& state) {
  constexpr unsigned kShards = 4;
  IdDirectory directory(200'000);
  const auto ids = receiver_ids(static_cast<std::size_t>(state.range(0)));
  for (const UserId id : ids) {
    directory.publish(id, static_cast<unsigned>(id % kShards));
  }
  FanoutPlanner planner(kShards, 0, &directory);
  for (auto _ : state) {
    benchmark::DoNotOptimize(&planner.plan(1, ids));
  }
}
BENCHMARK(BM_FanoutPlan)->Arg(1)->Arg(16)->Arg(255);

// Registry at 100k entries: lookup hit, and insert + erase of one more entry.
void BM_RegistryAt100k(benchmark::State& state) {
  constexpr std::size_t kEntries = 100'000;
  auto entries = std::make_unique<RegistryEntry[]>(kEntries + 1);
  Registry registry;
  for (std::size_t i = 0; i < kEntries; ++i) {
    entries[i].id = i + 1;
    registry.insert(entries[i]);
  }
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<UserId> pick(1, kEntries);
  UserId next = kEntries + 1;
  for (auto _ : state) {
    benchmark::DoNotOptimize(registry.find(pick(rng)));
    RegistryEntry& extra = entries[kEntries];
    extra.id = next++;
    registry.insert(extra);
    registry.erase(extra);
  }
}
BENCHMARK(BM_RegistryAt100k);

// Splitting and parsing `message X` lines, 64 per buffer.
void BM_LineSplitParse(benchmark::State& state) {
  std::string text;
  for (int i = 0; i < 64; ++i) {
    append_message_line(text, "payload-" + std::to_string(i));
  }
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  LineSplitter splitter(kDefaultMaxLineBytes);
  for (auto _ : state) {
    std::size_t messages = 0;
    splitter.feed(bytes, [&](std::string_view line) {
      messages += parse_line(line).verb == LineCommand::Verb::kMessage ? 1 : 0;
      return true;
    });
    benchmark::DoNotOptimize(messages);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_LineSplitParse);

// A heap block's whole life: create, share with a queue, release.
void BM_HeapBlockCreateRelease(benchmark::State& state) {
  std::uint64_t in_use = 0;
  for (auto _ : state) {
    BlockRef block = HeapBlock::create(static_cast<std::uint32_t>(state.range(0)), &in_use);
    BlockRef shared = block;
    benchmark::DoNotOptimize(shared.data());
  }
}
BENCHMARK(BM_HeapBlockCreateRelease)->Arg(16)->Arg(4096);

// Queue 64 slices of one shared block, build the iovec array, consume it all: one send's worth.
void BM_OutboundQueueCycle(benchmark::State& state) {
  BlockRef block = HeapBlock::create(64 * 80);
  OutboundQueue queue;
  iovec iov[64];
  for (auto _ : state) {
    for (std::uint32_t i = 0; i < 64; ++i) {
      queue.push(block, i * 80, 80);
    }
    const std::size_t n = queue.fill_iovecs(iov, 64, 1U << 22);
    benchmark::DoNotOptimize(n);
    queue.consume(queue.queued_bytes());
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_OutboundQueueCycle);

}  // namespace
}  // namespace ringhub

BENCHMARK_MAIN();
