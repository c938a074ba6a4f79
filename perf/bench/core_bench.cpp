// Microbenchmarks of the pure hot-path pieces in core/: frame codec, frame assembly, fan-out planning,
// registry, line splitting, hashing client-chosen X, shared blocks and the outbound queue. One
// iteration is one operation of the benchmark's name (one frame, one relay planned, one batch...);
// items/s counts what the comment says.
// Run: build/release/bin/ringhub-bench [--benchmark_filter=Registry] [--benchmark_min_time=0.2]
//   (write 0.2s with benchmark 1.8+, which wants the unit; Debian 12 has 1.7)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/fanout.hpp"
#include "core/frame_assembler.hpp"
#include "core/frame_codec.hpp"
#include "core/id_directory.hpp"
#include "core/keyed_hash.hpp"
#include "core/line_pending.hpp"
#include "core/line_protocol.hpp"
#include "core/outbound_queue.hpp"
#include "core/registry.hpp"
#include "core/shared_block.hpp"
#include "tests/core/test_hash_key.hpp"  // the fixed key and the std::hash collisions the tests use

namespace ringhub {
namespace {

using protocol::UserId;

// The hub's default --recv-buffer-size: what one receive completion can hand the assembler at most.
constexpr std::uint32_t kRecvBufferSize = 32 * 1024;
// A small relay body, the size most of the stress runs use.
constexpr std::size_t kSmallBody = 64;

std::vector<UserId> receiver_ids(std::size_t count) {
  std::vector<UserId> ids(count);
  for (std::size_t i = 0; i < count; ++i) {
    ids[i] = 1000 + i * 7;
  }
  return ids;
}

std::vector<std::uint8_t> relay_frame(std::size_t receivers, std::size_t body_size) {
  std::vector<std::uint8_t> frame;
  codec::append_relay(frame, receiver_ids(receivers), std::vector<std::uint8_t>(body_size, 0x5A));
  return frame;
}

// Seconds spent in fn(), for benchmarks that time only part of an iteration (UseManualTime).
template <typename Fn>
double seconds_in(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---- Codec: one frame per iteration ----

// Decode and validate one client header: the first thing done to every received frame.
void BM_CodecDecodeHeader(benchmark::State& state) {
  const auto frame = relay_frame(1, kSmallBody);
  for (auto _ : state) {
    const auto header = codec::decode_header(
        std::span<const std::uint8_t, protocol::kHeaderSize>(frame.data(), protocol::kHeaderSize));
    benchmark::DoNotOptimize(codec::validate_client_header(header));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CodecDecodeHeader);

// Decode and validate a RELAY header, then read its receiver list.
void BM_CodecDecodeRelayReceivers(benchmark::State& state) {
  const auto frame = relay_frame(static_cast<std::size_t>(state.range(0)), kSmallBody);
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
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CodecDecodeRelayReceivers)->ArgName("receivers")->Arg(1)->Arg(16)->Arg(255);

// The in-place rewrite of a RELAY's last 16 pre-body bytes into a DELIVER prefix.
void BM_CodecEncodeDeliverPrefix(benchmark::State& state) {
  std::uint8_t prefix[protocol::kDeliverPrefixSize];
  UserId sender = 1;
  for (auto _ : state) {
    codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(prefix), ++sender,
                                 kSmallBody);
    benchmark::DoNotOptimize(prefix);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CodecEncodeDeliverPrefix);

// Append a whole RELAY (64 B body) to a buffer whose capacity is reused: the client's send side.
void BM_CodecEncodeRelay(benchmark::State& state) {
  const auto ids = receiver_ids(static_cast<std::size_t>(state.range(0)));
  const std::vector<std::uint8_t> body(kSmallBody, 0x5A);
  std::vector<std::uint8_t> out;
  out.reserve(codec::relay_body_offset(protocol::kMaxReceivers) + body.size());
  for (auto _ : state) {
    out.clear();
    codec::append_relay(out, ids, body);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
}
BENCHMARK(BM_CodecEncodeRelay)->ArgName("receivers")->Arg(1)->Arg(16)->Arg(255);

// Append an IDENTITY reply (16 bytes) to a buffer whose capacity is reused.
void BM_CodecEncodeIdentityReply(benchmark::State& state) {
  std::vector<std::uint8_t> out;
  out.reserve(codec::identity_reply_size());
  UserId id = 1;
  for (auto _ : state) {
    out.clear();
    codec::append_identity_reply(out, ++id);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CodecEncodeIdentityReply);

// Append a LIST reply naming `ids` clients: a small hub, a busy one, a full one (100k).
void BM_CodecEncodeListReply(benchmark::State& state) {
  const auto ids = receiver_ids(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint8_t> out;
  out.reserve(codec::list_reply_size(ids.size()));
  for (auto _ : state) {
    out.clear();
    codec::append_list_reply(out, ids);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
}
BENCHMARK(BM_CodecEncodeListReply)->ArgName("ids")->Arg(16)->Arg(1024)->Arg(100'000);

// ---- Frame assembly ----

// The zero-copy fast path: one receive buffer (32 KiB) full of whole RELAYs to one receiver, cut
// into in-place frame views. Items are frames.
void BM_AssembleRelayInPlace(benchmark::State& state) {
  const auto frame = relay_frame(1, static_cast<std::size_t>(state.range(0)));
  const auto frames = static_cast<std::uint32_t>(kRecvBufferSize / frame.size());
  const auto length = static_cast<std::uint32_t>(frames * frame.size());
  const BlockRef buffer = HeapBlock::create(kRecvBufferSize);
  for (std::uint32_t i = 0; i < frames; ++i) {
    std::memcpy(buffer.data() + i * frame.size(), frame.data(), frame.size());
  }
  AssemblyAccounting accounting;
  FrameAssembler assembler(&accounting);
  for (auto _ : state) {
    std::uint64_t body_bytes = 0;
    // Not const: Google Benchmark 1.8+ deprecates DoNotOptimize on a const lvalue (Debian 13 -Werror).
    FeedResult result = assembler.feed(buffer, 0, length, [&](FrameView&& view) {
      body_bytes += view.header.length;
      benchmark::DoNotOptimize(view.bytes());
      return true;
    });
    benchmark::DoNotOptimize(result);
    benchmark::DoNotOptimize(body_bytes);
  }
  if (accounting.copied_bytes != 0) {
    state.SkipWithError("frames that fit a buffer were copied: not the fast path");
  }
  state.SetItemsProcessed(state.iterations() * frames);
  state.SetBytesProcessed(state.iterations() * length);
}
BENCHMARK(BM_AssembleRelayInPlace)->ArgName("body")->Arg(64)->Arg(1024);

// ---- Fan-out planning ----

// Plan one relay to K receivers (given in no particular order) on a hub of 1 shard (no directory)
// or 6 (the shard count for 100k connections here): dedupe, self skip, directory routing.
// ns/op is per relay; items are receivers.
void BM_FanoutPlan(benchmark::State& state) {
  const auto receivers = static_cast<std::size_t>(state.range(0));
  const auto shards = static_cast<unsigned>(state.range(1));
  IdDirectory directory(200'000);
  auto ids = receiver_ids(receivers);
  for (const UserId id : ids) {
    directory.publish(id, static_cast<unsigned>(id % shards));
  }
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(42));
  FanoutPlanner planner(shards, 0, &directory);
  for (auto _ : state) {
    benchmark::DoNotOptimize(&planner.plan(1, ids));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(receivers));
}
BENCHMARK(BM_FanoutPlan)->ArgNames({"receivers", "shards"})->ArgsProduct({{1, 16, 255}, {1, 6}});

// ---- Registry at 100k entries ----

// A shard's registry holding 100k connections, with the order in which they leave (random). Ids come
// from an increasing counter, as on the hub, so re-inserted entries get new, higher ids.
class RegistryAt100k {
 public:
  static constexpr std::size_t kEntries = 100'000;
  static constexpr std::size_t kBatch = 1'000;  // entries erased or inserted per iteration

  RegistryAt100k() : entries_(std::make_unique<RegistryEntry[]>(kEntries)), leave_order_(kEntries) {
    for (std::size_t i = 0; i < kEntries; ++i) {
      entries_[i].id = next_id_++;
      registry_.insert(entries_[i]);
      leave_order_[i] = &entries_[i];
    }
    std::shuffle(leave_order_.begin(), leave_order_.end(), std::mt19937_64(42));
  }

  Registry& registry() { return registry_; }

  // The next kBatch entries to leave, cycling through the leave order.
  std::span<RegistryEntry* const> next_batch() {
    const std::span<RegistryEntry* const> batch(leave_order_.data() + next_batch_ * kBatch, kBatch);
    next_batch_ = (next_batch_ + 1) % (kEntries / kBatch);
    return batch;
  }
  void erase(std::span<RegistryEntry* const> batch) {
    for (RegistryEntry* entry : batch) {
      registry_.erase(*entry);
    }
  }
  void insert_with_new_ids(std::span<RegistryEntry* const> batch) {
    for (RegistryEntry* entry : batch) {
      entry->id = next_id_++;
      registry_.insert(*entry);
    }
  }

 private:
  std::unique_ptr<RegistryEntry[]> entries_;  // outlives registry_, which links them
  Registry registry_;
  std::vector<RegistryEntry*> leave_order_;
  std::size_t next_batch_ = 0;
  UserId next_id_ = 1;
};

// Find a live id among 100k: random hits, ids drawn before timing, enough of them (128Ki) that the
// lookups touch the whole table rather than a cached corner of it.
void BM_RegistryLookupAt100k(benchmark::State& state) {
  RegistryAt100k live;
  constexpr std::size_t kPicks = std::size_t{1} << 17;  // a power of two
  std::vector<UserId> picks(kPicks);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<UserId> pick(1, RegistryAt100k::kEntries);
  std::generate(picks.begin(), picks.end(), [&] { return pick(rng); });
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(live.registry().find(picks[i++ & (kPicks - 1)]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RegistryLookupAt100k);

// Insert 1000 new connections into a registry of 99k (no rehash: the table has 128Ki buckets). The
// erase that makes room is not timed. Items are inserts.
void BM_RegistryInsertAt100k(benchmark::State& state) {
  RegistryAt100k live;
  for (auto _ : state) {
    const auto batch = live.next_batch();
    live.erase(batch);
    state.SetIterationTime(seconds_in([&] { live.insert_with_new_ids(batch); }));
  }
  state.SetItemsProcessed(state.iterations() * RegistryAt100k::kBatch);
}
BENCHMARK(BM_RegistryInsertAt100k)->UseManualTime();

// Erase 1000 random connections from a registry of 100k. The re-insert that refills it is not timed.
// Items are erases.
void BM_RegistryEraseAt100k(benchmark::State& state) {
  RegistryAt100k live;
  for (auto _ : state) {
    const auto batch = live.next_batch();
    state.SetIterationTime(seconds_in([&] { live.erase(batch); }));
    live.insert_with_new_ids(batch);
  }
  state.SetItemsProcessed(state.iterations() * RegistryAt100k::kBatch);
}
BENCHMARK(BM_RegistryEraseAt100k)->UseManualTime();

// ---- Line protocol ----

// Split and parse one buffer of 64 `message X` lines. Items are lines.
void BM_LineSplitParse(benchmark::State& state) {
  constexpr int kLines = 64;
  std::string text;
  for (int i = 0; i < kLines; ++i) {
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
  state.SetItemsProcessed(state.iterations() * kLines);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}
BENCHMARK(BM_LineSplitParse);

// ---- Hashing client-chosen X: std::hash (before) against the keyed SipHash (after) ----

// X values held pending while the benchmark runs: a client that keeps this many messages unanswered.
constexpr std::size_t kHeldXs = 4000;
// Further X values cycled through one per iteration (one `message X` then its `ok X`).
constexpr std::size_t kCycledXs = 256;

// The X values a benchmark uses: random-looking ones, or (adversarial) ones that all share a bucket of
// a std::hash table holding kHeldXs + 1 strings, the most the tables below ever hold.
std::vector<std::string> bench_xs(bool adversarial) {
  const std::size_t count = kHeldXs + kCycledXs;
  if (!adversarial) {
    std::vector<std::string> xs;
    xs.reserve(count);
    std::mt19937_64 rng(42);  // NOLINT(cert-msc51-cpp): the same X values on every run
    for (std::size_t i = 0; i < count; ++i) {
      xs.push_back(std::to_string(rng()));
    }
    return xs;
  }
  std::unordered_map<std::string, int> sized;
  for (std::size_t i = 0; i <= kHeldXs; ++i) {
    sized.emplace(std::to_string(i), 0);
  }
  return std_hash_collisions(count, sized.bucket_count());
}

struct StdXHash {  // what PendingMessages and owner_of used before KeyedHash
  std::size_t operator()(std::string_view x) const noexcept { return std::hash<std::string_view>{}(x); }
};
struct KeyedXHash {
  KeyedHash hash{test_hash_key()};
  std::size_t operator()(std::string_view x) const noexcept { return hash(x); }
};

// One message and its ok on a table of the pending X values' type (std::unordered_map<std::string,...>
// as in PendingMessages) holding kHeldXs others: insert X, then find and erase it. Arg 1 = adversarial
// X values, 0 = random ones. Items are messages.
template <typename Hash>
void BM_XTableMessageOk(benchmark::State& state) {
  const std::vector<std::string> xs = bench_xs(state.range(0) != 0);
  std::unordered_map<std::string, int, Hash> table;
  for (std::size_t i = 0; i < kHeldXs; ++i) {
    table.emplace(xs[i], 0);
  }
  std::size_t next = kHeldXs;
  for (auto _ : state) {
    const std::string& x = xs[next];
    table.emplace(x, 1);
    benchmark::DoNotOptimize(table.erase(x));
    next = next + 1 == xs.size() ? kHeldXs : next + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_XTableMessageOk, StdXHash)->ArgName("adversarial")->Arg(0)->Arg(1);
BENCHMARK_TEMPLATE(BM_XTableMessageOk, KeyedXHash)->ArgName("adversarial")->Arg(0)->Arg(1);

// The same through PendingMessages itself (keyed): add one `message X`, answer it with `ok X`.
void BM_PendingMessageOk(benchmark::State& state) {
  const std::vector<std::string> xs = bench_xs(state.range(0) != 0);
  PendingMessages pending(KeyedHash{test_hash_key()});
  for (std::size_t i = 0; i < kHeldXs; ++i) {
    pending.add(xs[i], LineEndpoint{0, 1}, LineEndpoint{0, 2});
  }
  std::size_t next = kHeldXs;
  for (auto _ : state) {
    pending.add(xs[next], LineEndpoint{0, 3}, LineEndpoint{0, 2});
    benchmark::DoNotOptimize(pending.answer(xs[next]));
    next = next + 1 == xs.size() ? kHeldXs : next + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PendingMessageOk)->ArgName("adversarial")->Arg(0)->Arg(1);

// The hash alone on a typical X (a 36-byte UUID): the fixed cost SipHash adds to every message.
template <typename Hash>
void BM_HashOneX(benchmark::State& state) {
  const std::string x = "0b8e1f8c-3f5e-4b7a-9c1d-2e6f4a8b9c0d";
  const Hash hash;
  for (auto _ : state) {
    benchmark::DoNotOptimize(hash(x));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_HashOneX, StdXHash);
BENCHMARK_TEMPLATE(BM_HashOneX, KeyedXHash);

// ---- Shared blocks and the outbound queue ----

// A heap block's whole life: malloc, one more reference (a queue), both released, free.
void BM_HeapBlockCreateRelease(benchmark::State& state) {
  MemoryAccount in_use;
  for (auto _ : state) {
    BlockRef block = HeapBlock::create(static_cast<std::uint32_t>(state.range(0)), &in_use);
    BlockRef shared = block;  // NOLINT(performance-unnecessary-copy-initialization): the copy is measured
    benchmark::DoNotOptimize(shared.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HeapBlockCreateRelease)->ArgName("bytes")->Arg(16)->Arg(4096);

// One more reference to a live block taken and dropped: what each zero-copy delivery adds.
void BM_BlockRefShareDrop(benchmark::State& state) {
  const BlockRef block = HeapBlock::create(kRecvBufferSize);
  for (auto _ : state) {
    BlockRef shared = block;  // NOLINT(performance-unnecessary-copy-initialization): the copy is measured
    benchmark::DoNotOptimize(shared.get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BlockRefShareDrop);

// Push one 80-byte slice and consume one, with `queued` slices already waiting. With 0 the queue
// empties every time, so it frees its ring and the next push allocates one: an idle connection's
// first delivery. Items are slices.
void BM_OutboundQueuePushConsume(benchmark::State& state) {
  constexpr std::uint32_t kSlice = 80;
  const BlockRef block = HeapBlock::create(kSlice);
  OutboundQueue queue;
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    queue.push(block, 0, kSlice);
  }
  for (auto _ : state) {
    queue.push(block, 0, kSlice);
    queue.consume(kSlice);
    benchmark::DoNotOptimize(queue.queued_bytes());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OutboundQueuePushConsume)->ArgName("queued")->Arg(0)->Arg(64);

// One send's worth: queue 64 slices of one shared block, build the iovec array, consume it all.
// Items are slices.
void BM_OutboundQueueSend64(benchmark::State& state) {
  constexpr std::uint32_t kSlices = 64;
  constexpr std::uint32_t kSlice = 80;
  const BlockRef block = HeapBlock::create(kSlices * kSlice);
  OutboundQueue queue;
  iovec iov[kSlices];
  for (auto _ : state) {
    for (std::uint32_t i = 0; i < kSlices; ++i) {
      queue.push(block, i * kSlice, kSlice);
    }
    benchmark::DoNotOptimize(queue.fill_iovecs(iov, kSlices, std::size_t{1} << 22));
    benchmark::ClobberMemory();
    queue.consume(queue.queued_bytes());
  }
  state.SetItemsProcessed(state.iterations() * kSlices);
  state.SetBytesProcessed(state.iterations() * kSlices * kSlice);
}
BENCHMARK(BM_OutboundQueueSend64);

}  // namespace
}  // namespace ringhub

BENCHMARK_MAIN();
