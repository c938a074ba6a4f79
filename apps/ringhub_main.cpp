// ringhub: the relay hub server. Parses flags into a HubConfig, starts the Hub, logs one line when
// ready, and stops cleanly on SIGINT or SIGTERM.
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "apps/cli_checks.hpp"
#include "core/endpoint_text.hpp"
#include "core/id_directory.hpp"
#include "core/line_protocol.hpp"
#include "transport/hub.hpp"

namespace {

struct Options {
  ringhub::HubConfig hub;
  std::string log_level = "info";
  unsigned shutdown_grace_ms = static_cast<unsigned>(ringhub::kDefaultShutdownGrace.count());
  unsigned frame_timeout_ms = static_cast<unsigned>(ringhub::kDefaultFrameTimeout.count());
  unsigned write_deadline_ms = static_cast<unsigned>(ringhub::kDefaultWriteDeadline.count());
  unsigned keepalive_idle_s = static_cast<unsigned>(ringhub::kDefaultKeepaliveIdle.count());
  unsigned keepalive_interval_s = static_cast<unsigned>(ringhub::kDefaultKeepaliveInterval.count());
  unsigned relay_idle_timeout_ms = 0;
  unsigned line_idle_timeout_ms = 0;
  unsigned idle_poll_us = static_cast<unsigned>(ringhub::kDefaultIdlePoll.count());
};

void add_flags(CLI::App& app, Options& o) {
  app.add_option("--bind", o.hub.bind_address, "Address to listen on (IPv4 or IPv6 literal)")
      ->capture_default_str()
      ->check(ringhub::cli::ip_literal());
  app.add_option("--relay-port", o.hub.relay_port, "TCP port of the relay protocol (0 = any free port)")
      ->capture_default_str()
      ->check(ringhub::cli::port_number(o.hub.relay_port));
  app.add_option("--line-port", o.hub.line_port, "TCP port of the line protocol (message X / ok X)")
      ->capture_default_str()
      ->check(ringhub::cli::port_number(o.hub.line_port));
  app.add_option("--admin-port", o.hub.admin_port, "HTTP port for GET /metrics and /healthz")
      ->capture_default_str()
      ->check(ringhub::cli::port_number(o.hub.admin_port));
  app.add_option("--max-line-bytes", o.hub.max_line_bytes,
                 "Longest line protocol line; longer gets an error and a close")
      ->capture_default_str()
      ->check(ringhub::cli::whole_number(o.hub.max_line_bytes, ringhub::kShortestUsableMaxLineBytes));
  app.add_option("--max-line-pending-bytes", o.hub.max_line_pending_bytes,
                 "Unanswered `message X` one line connection may have (X bytes + 256 each) while hub "
                 "memory is past half of --max-memory; what it sends past that is held back until oks "
                 "come back or memory falls below 3/8")
      ->capture_default_str()
      ->check(ringhub::cli::positive(o.hub.max_line_pending_bytes));
  app.add_flag(
      "!--no-line-reforward", o.hub.line_reforward,
      "Do not re-forward a line message whose receiver left before answering (to test client recovery)");
  app.add_option("--shards", o.hub.shards,
                 "Shards, one io_uring and direct-descriptor table each (0 = max(cores, what "
                 "--max-connections needs))")
      ->capture_default_str()
      ->check(ringhub::cli::whole_number(o.hub.shards, 0U, ringhub::IdDirectory::kMaxShards));
  app.add_option("--threads", o.hub.threads,
                 "Threads driving the shards, each several when there are more shards than threads "
                 "(0 = cores; at most the shard count)")
      ->capture_default_str();
  app.add_option("--max-connections", o.hub.max_connections, "Connections served at once; more get ERROR 7")
      ->capture_default_str()
      ->check(ringhub::cli::positive(o.hub.max_connections));
  app.add_option("--max-outbound-bytes", o.hub.max_outbound_bytes,
                 "Bytes queued to one client before it is closed as a slow consumer (ERROR 6)")
      ->capture_default_str()
      ->check(ringhub::cli::positive(o.hub.max_outbound_bytes));
  app.add_option("--recv-buffer-size", o.hub.recv_buffer_size,
                 "Bytes per receive buffer (frames up to this size are "
                 "relayed without a copy)")
      ->capture_default_str()
      ->check(CLI::Range(4096U, 1U << 24));
  app.add_option("--recv-buffers", o.hub.recv_buffer_count,
                 "Receive buffers per shard, rounded up to a power of two (0: 512, or fewer when many "
                 "shards' pools would not fit --max-memory)")
      ->capture_default_str()
      ->check(ringhub::cli::zero_or(o.hub.recv_buffer_count, 2U, 32768U));
  app.add_option("--batch-threshold", o.hub.batch_threshold,
                 "Frames up to this many bytes are copied into one send batch (0: every frame "
                 "zero-copy, one iovec each)")
      ->capture_default_str()
      ->check(CLI::Range(0U, ringhub::kMaxBatchThreshold));
  app.add_flag("--send-zc", o.hub.send_zc,
               "Send with IORING_OP_SENDMSG_ZC (pays on real NICs, not on loopback)");
  app.add_option("--max-memory", o.hub.max_memory,
                 "Bytes the hub may hold for clients (frames, replies, queues, batches); past 3/4 of it, "
                 "senders of large frames are not read (until it falls below 5/8), past all of it nobody "
                 "is (until below 3/4); nothing is dropped. Default 1 GiB; 0 = a quarter of physical RAM")
      ->capture_default_str();
  app.add_option("--frame-timeout-ms", o.frame_timeout_ms,
                 "A frame started and not finished within this long gets ERROR 8 and a close")
      ->capture_default_str()
      ->check(ringhub::cli::positive(o.frame_timeout_ms));
  app.add_option("--write-deadline-ms", o.write_deadline_ms,
                 "Past 3/4 of --max-memory, a client that has taken no byte of what is queued for it for "
                 "this long is cut as a slow consumer (ERROR 6), whatever it has queued (0: never)")
      ->capture_default_str();
  app.add_option("--tcp-keepalive-idle", o.keepalive_idle_s,
                 "Seconds a connection may be silent before TCP keepalive probes start (0: no keepalive)")
      ->capture_default_str()
      ->check(CLI::Range(0U, 32767U));
  app.add_option("--tcp-keepalive-interval", o.keepalive_interval_s, "Seconds between keepalive probes")
      ->capture_default_str()
      ->check(CLI::Range(1U, 32767U));
  app.add_option("--tcp-keepalive-count", o.hub.keepalive_count,
                 "Unanswered keepalive probes before the kernel drops the connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 127));
  app.add_option("--relay-idle-timeout-ms", o.relay_idle_timeout_ms,
                 "Close a relay connection that sends nothing for this long (0: never; a listener may "
                 "rightly only receive)")
      ->capture_default_str();
  app.add_option("--line-idle-timeout-ms", o.line_idle_timeout_ms,
                 "Close a line connection that sends nothing for this long (0: never)")
      ->capture_default_str();
  app.add_option("--shutdown-grace-ms", o.shutdown_grace_ms,
                 "On SIGINT/SIGTERM, how long to flush queued bytes")
      ->capture_default_str();
  app.add_option("--idle-poll-us", o.idle_poll_us,
                 "After handling work, how long a hub thread polls for more before it sleeps (0: off). "
                 "Buys latency and small-message throughput with CPU: a polling thread runs its core "
                 "flat out under steady moderate load")
      ->capture_default_str()
      ->check(CLI::Range(0U, 1'000'000U));
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
}

int wait_for_signal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int received = 0;
  sigwait(&signals, &received);
  return received;
}

// Exits at once on a second SIGINT or SIGTERM while the hub flushes: whoever sent it wants out now
// (128 + the signal, as a shell reports a signal's death), and what is still queued is not sent. The
// listeners are shut first: the rings' pending accepts would keep the ports in LISTEN until the kernel
// tears the rings down after the exit, and a hub restarted at once could not bind them.
class SecondSignalExit {
 public:
  void watch(const ringhub::Hub& hub) {
    hub_ = &hub;
    std::thread([this] { exit_on_signal(); }).detach();
  }
  // Before the hub is destroyed: a later signal then exits without touching it.
  void forget_hub() {
    const std::lock_guard lock(mutex_);
    hub_ = nullptr;
  }

 private:
  void exit_on_signal() {
    const int again = wait_for_signal();
    spdlog::warn("ringhub: signal {} received again, exiting without finishing the shutdown grace", again);
    const std::lock_guard lock(mutex_);  // held until the exit, so the hub cannot be destroyed meanwhile
    if (hub_ != nullptr) {
      hub_->stop_listening();
    }
    // Flushed, not shut down: the shard threads still run, and may log (an accept on a listener just
    // shut) until the exit; spdlog::shutdown() drops the logger they would use (a SEGV under TSan).
    spdlog::default_logger()->flush();
    std::_Exit(128 + again);
  }

  std::mutex mutex_;
  const ringhub::Hub* hub_ = nullptr;
};

// Send batches (up to 64 KiB) and other mid-sized buffers come and go at every send. With glibc's
// defaults (trim at 128 KiB of free heap top, mmap above a threshold that moves) the heap shrank and
// regrew around them, faulting pages in at every send: K=255 with 1 KiB bodies fell from 3.5M to 0.3M
// deliveries/s when these settings were briefly removed. Frames of 64 KiB and more do not come from
// malloc at all (transport/large_block_memory.hpp), and the shards malloc_trim once a burst is over.
void keep_heap_from_churning() {
  constexpr int kMmapThreshold = 4 << 20;
  constexpr int kTrimThreshold = 16 << 20;
  if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) != 1 || mallopt(M_TRIM_THRESHOLD, kTrimThreshold) != 1) {
    spdlog::warn("ringhub: mallopt refused the heap settings; sends may cost page faults");
  }
}

int run(int argc, char** argv) {
  CLI::App app{"ringhub: an io_uring relay hub"};
  Options options;
  add_flags(app, options);
  if (const std::optional<int> exit_status = ringhub::cli::parse_command_line(app, argc, argv)) {
    return *exit_status;
  }
  options.hub.shutdown_grace = std::chrono::milliseconds(options.shutdown_grace_ms);
  options.hub.idle_poll = std::chrono::microseconds(options.idle_poll_us);
  options.hub.frame_timeout = std::chrono::milliseconds(options.frame_timeout_ms);
  options.hub.write_deadline = std::chrono::milliseconds(options.write_deadline_ms);
  options.hub.keepalive_idle = std::chrono::seconds(options.keepalive_idle_s);
  options.hub.keepalive_interval = std::chrono::seconds(options.keepalive_interval_s);
  options.hub.relay_idle_timeout = std::chrono::milliseconds(options.relay_idle_timeout_ms);
  options.hub.line_idle_timeout = std::chrono::milliseconds(options.line_idle_timeout_ms);
  spdlog::set_level(spdlog::level::from_str(options.log_level));

  // Block the stop signals before any shard thread exists, so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  keep_heap_from_churning();
  auto hub = ringhub::Hub::start(options.hub);
  if (!hub) {
    spdlog::critical("ringhub: {}", hub.error().message);
    return hub.error().domain == ringhub::ErrorDomain::kUsage ? ringhub::cli::kExitUsage : EXIT_FAILURE;
  }
  spdlog::info(
      "ringhub ready: relay on {0}:{1}, line on {0}:{2}, metrics on http://{0}:{3}/metrics, {4} shards on "
      "{5} threads, max {6} connections",
      ringhub::host_text(options.hub.bind_address), (*hub)->relay_port(), (*hub)->line_port(),
      (*hub)->admin_port(), (*hub)->shard_count(), (*hub)->thread_count(), (*hub)->max_connections());
  const int signal = wait_for_signal();
  spdlog::info("ringhub: signal {} received, stopping", signal);
  static SecondSignalExit second_signal;  // static: its thread outlives run()
  second_signal.watch(**hub);
  (*hub)->stop();
  second_signal.forget_hub();
  spdlog::info("ringhub: stopped");
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // start-up only: the hot path reports errors by value
    spdlog::critical("ringhub: {}", e.what());
    return EXIT_FAILURE;
  }
}
