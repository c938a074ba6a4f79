// Tests for how ringhub-stress's relay mode paces and ends: the in-flight window that keeps this host's
// TCP out of memory pressure, the stall watch (any byte is progress, and bytes the kernel still holds in
// the hub's sockets are not a stall), the /proc/net/tcp sum it asks, and the default deadline, which
// leaves time to deliver the planned bytes. The 100k-client run failed on each: the kernel dropped
// segments under TCP memory pressure, and TCP's recovery delivered the last bytes after the harness had
// given up on them.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>

#include "perf/stress/hub_metrics.hpp"
#include "perf/stress/in_flight_window.hpp"
#include "perf/stress/options.hpp"
#include "perf/stress/stall_watch.hpp"

namespace ringhub::stress {
namespace {

constexpr std::int64_t kSecond = 1'000'000'000;

TEST(InFlightWindow, RefusesWhatDoesNotFitUntilReleased) {
  InFlightWindow window(1000);
  EXPECT_TRUE(window.try_reserve(600));
  EXPECT_TRUE(window.try_reserve(400));  // exactly full
  EXPECT_FALSE(window.try_reserve(1));
  window.release(600);
  EXPECT_FALSE(window.try_reserve(601));
  EXPECT_TRUE(window.try_reserve(600));
  EXPECT_EQ(window.held(), 1000U);
}

TEST(InFlightWindow, ARelayLargerThanTheWindowGoesAlone) {
  InFlightWindow window(1000);
  EXPECT_TRUE(window.try_reserve(5000));  // nothing in flight: it must be able to start
  EXPECT_FALSE(window.try_reserve(1));
  window.release(5000);
  EXPECT_TRUE(window.try_reserve(1));
}

TEST(InFlightWindow, ZeroMeansNoLimit) {
  InFlightWindow window(0);
  EXPECT_TRUE(window.try_reserve(std::uint64_t{1} << 40));
  EXPECT_TRUE(window.try_reserve(std::uint64_t{1} << 40));
}

// Relay flags as given on the command line; sources 0: no io_uring probe for source binding.
Options relay_options(std::uint32_t clients) {
  Options options;
  options.mode = "relay";
  options.clients = clients;
  options.sources = 0;
  options.threads = 2;
  options.hub = "127.0.0.1-8:7400";  // ports enough for every client without source addresses
  return options;
}

TEST(RelayPlan, DefaultWindowIsAThirdOfTheTcpPressureLevel) {
  Options options = relay_options(1000);
  const Result<RunPlan> plan = make_plan(options);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const std::optional<KernelTcpMemory> tcp = read_kernel_tcp_memory();
  if (!tcp) {
    GTEST_SKIP() << "no /proc/sys/net/ipv4/tcp_mem here";
  }
  EXPECT_EQ(plan->max_in_flight, tcp->pressure_pages * 4096 / 3);
  options.max_in_flight = 0;
  EXPECT_EQ(make_plan(options)->max_in_flight, 0U);
}

TEST(StallWatch, QuietOnlyAfterTheTimeoutWithoutProgress) {
  StallWatch watch(10 * kSecond);
  watch.restart(0);
  EXPECT_FALSE(watch.quiet(5 * kSecond, 100));
  EXPECT_FALSE(watch.quiet(14 * kSecond, 100));  // 9 s since the counter last moved
  EXPECT_TRUE(watch.quiet(16 * kSecond, 100));
}

TEST(StallWatch, BytesOfAnUnfinishedDeliveryAreProgress) {
  // One large DELIVER arriving at TCP's recovery pace: no delivery completes for 30 s, bytes keep coming.
  StallWatch watch(10 * kSecond);
  watch.restart(0);
  std::uint64_t bytes = 0;
  for (std::int64_t t = 1; t <= 30; ++t) {
    bytes += 20'000;
    EXPECT_FALSE(watch.quiet(t * kSecond, bytes)) << "at " << t << " s";
  }
}

TEST(StallWatch, BytesStillInTheKernelRestartTheClock) {
  StallWatch watch(10 * kSecond);
  watch.restart(0);
  EXPECT_FALSE(watch.quiet(0, 7));
  ASSERT_TRUE(watch.quiet(11 * kSecond, 7));
  watch.still_in_flight(11 * kSecond);
  EXPECT_FALSE(watch.quiet(20 * kSecond, 7));
  EXPECT_TRUE(watch.quiet(22 * kSecond, 7));  // nothing new for another timeout: ask again, or stall
}

// Port 7610 is 1DBA in hex.
const std::string kProcNetTcp =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0100007F:1DBA 00000000:0000 0A 00000000:00000010 00:00000000 00000000     0        0 1 1 0\n"
    "   1: 0100007F:1DBA 0B00007F:9280 01 0003A000:00000000 01:00000032 00000003     0        0 2 1 0\n"
    "   2: 0100007F:1DBA 0500007F:9132 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0\n"
    "   3: 0100007F:1DBA 0200007F:8930 04 00000100:00000000 01:00000010 00000000     0        0 4 1 0\n"
    "   4: 0B00007F:9280 0100007F:1DBA 01 00000020:0001F000 00:00000000 00000000     0        0 5 1 0\n"
    "   5: 0100007F:1CE8 0300007F:8000 01 00100000:00000000 00:00000000 00000000     0        0 6 1 0\n";

TEST(SumSendQueues, CountsTheHubPortsSocketsOnly) {
  const std::array<std::uint16_t, 1> hub{7610};
  // 0x3A000 + 0x100 (established and FIN_WAIT1 on 7610); not the listener's backlog, not the client
  // end (local port 0x9280) nor another server's port (0x1CE8 = 7400).
  EXPECT_EQ(sum_send_queues(kProcNetTcp, hub), 0x3A000U + 0x100U);
  const std::array<std::uint16_t, 2> both{7610, 7400};
  EXPECT_EQ(sum_send_queues(kProcNetTcp, both), 0x3A000U + 0x100U + 0x100000U);
  const std::array<std::uint16_t, 1> none{7999};
  EXPECT_EQ(sum_send_queues(kProcNetTcp, none), 0U);
}

TEST(SumSendQueues, ToleratesAHeadingOnlyAndGarbage) {
  const std::array<std::uint16_t, 1> hub{7610};
  EXPECT_EQ(sum_send_queues("  sl  local_address rem_address\n", hub), 0U);
  EXPECT_EQ(sum_send_queues("", hub), 0U);
  EXPECT_EQ(sum_send_queues("heading\n   0: garbage\n\n", hub), 0U);
}

RunPlan relay_plan(std::uint32_t clients, std::uint32_t senders) {
  RunPlan plan;
  plan.mode = Mode::kRelay;
  plan.clients = clients;
  plan.senders = senders;
  plan.relays = 4;
  plan.max_size = 1U << 20;
  plan.max_fanout = 255;
  return plan;
}

TEST(RelayDeadline, ExpectedBytesMatchTheMeasuredDefaultRun) {
  // The 100k default run planned 46.4 to 47.4 GiB of bodies (four seeds): log-uniform sizes, mean
  // about 94 KB, mean fan-out 128, 4000 relays.
  const double bytes = expected_relay_bytes(relay_plan(100'000, 1000));
  EXPECT_GT(bytes, 44.0 * (1U << 30));
  EXPECT_LT(bytes, 50.0 * (1U << 30));
}

TEST(RelayDeadline, DefaultLeavesTimeToDeliverThePlan) {
  Options options = relay_options(2000);
  options.ramp_s = 2;
  options.senders = 0.05;
  const Result<RunPlan> plan = make_plan(options);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  const double allowance = delivery_allowance_s(*plan);
  // 100 senders x 4 relays: about 4.8 GB, over a minute at the slowest rate the deadline allows for.
  EXPECT_GT(allowance, 60.0);
  EXPECT_EQ(plan->deadline_ns, static_cast<std::int64_t>((2 + 120 + allowance) * 1e9));

  options.deadline_s = 30;  // an explicit deadline is kept as given
  EXPECT_EQ(make_plan(options)->deadline_ns, 30 * kSecond);
}

TEST(RelayDeadline, LineModeKeepsRampPlusSlack) {
  Options options;
  options.clients = 1000;
  options.ramp_s = 5;
  options.sources = 0;
  options.threads = 2;
  const Result<RunPlan> plan = make_plan(options);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->deadline_ns, 125 * kSecond);
}

}  // namespace
}  // namespace ringhub::stress
