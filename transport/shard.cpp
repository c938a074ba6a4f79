// Shard: its loop over a uring::EventLoop (which takes each turn), the completion dispatch and the
// work of each iteration. The handlers live beside it: shard_connections.cpp (admission and stopping),
// shard_relay.cpp and shard_line.cpp; the reads are transport/read_side, the writes transport/sender,
// the drain and close of a connection transport/connection_lifecycle.
#include "transport/shard.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "transport/op_tag.hpp"

namespace ringhub {

namespace {

// Submission queue: one loop iteration's SQEs (sends, re-arms, MSG_RINGs); a full SQ submits early.
constexpr unsigned kSqEntries = 4096;
// Completion queue: sized for bursts of recvs, sends and accepts between two reaps. Overflow is a
// slow path, not a loss (FEAT_NODROP), and is counted.
constexpr unsigned kCqEntries = 65536;
// The shard's housekeeping period: accept retries, frame timeouts, heap trimming.
constexpr std::chrono::milliseconds kTick{250};

}  // namespace

Shard::Shard(HubShared& shared, unsigned index, int relay_listen_fd, int line_listen_fd)
    : shared_(shared),
      config_(shared.config),
      index_(index),
      counters_(shared.counters[index]),
      loop_(*this, fmt::format("shard {}", index)),
      acceptor_(loop_.ring(), {{relay_listen_fd, line_listen_fd}}, index),
      relay_({.shard_index = index,
              .shard_count = shared.shard_count,
              .small_frame_bytes = shared.config.batch_threshold},
             &shared.directory, relay_seam_, shared.memory[index], shared.counters[index]),
      line_(line_service_config(shared, index), shared.x_hash, line_seam_, shared.counters[index],
            std::random_device{}() ^ (std::uint64_t{index} << 32)),
      memory_(shared.memory[index]),
      sender_(loop_.ring(), config_, index, counters_, memory_, send_events_, now_),
      gate_(shared, gate_events_),
      clocks_(config_, clock_events_),
      lifecycle_({.ring = loop_.ring(),
                  .shard_index = index,
                  .shutdown_grace = config_.shutdown_grace,
                  .counters = counters_,
                  .live_connections = shared.live_connections,
                  .sender = sender_,
                  .gate = gate_,
                  .events = lifecycle_events_}),
      read_({.loop = loop_,
             .shard_index = index,
             .counters = counters_,
             .gate = gate_,
             .clocks = clocks_,
             .lifecycle = lifecycle_,
             .now = now_,
             .budget_limit = shared.budget.limit(),
             .events = read_events_}),
      mailbox_(index, shared.ring_fds, shared.messages_in_flight, shared.memory[index], loop_.ring(),
               router_) {
  assembly_.memory = &memory_;
  assembly_.direct_threshold = config_.recv_buffer_size;  // such a frame never lies whole in a buffer
  tick_ts_ = to_kernel_timespec(kTick);
}

Shard::~Shard() {
  sender_.free_pooled();
  memory_.release(pending_lines_charged_);
  loop_.close();
}

Result<void> Shard::init(uring::TaskRun task_run) {
  if (Result<void> loop = loop_.init({.sq_entries = kSqEntries,
                                      .cq_entries = kCqEntries,
                                      .table_size = shared_.table_size,
                                      .task_run = task_run,
                                      .buffer_count = config_.recv_buffer_count,
                                      .buffer_size = config_.recv_buffer_size});
      !loop) {
    return loop;
  }
  sender_.set_receive_buffers(&loop_.buffers());
  capacity_ = shard_connection_capacity(shared_.table_size);
  return {};
}

io_uring_sqe* Shard::sqe() {
  return loop_.ring().next_sqe();
}

void Shard::start() {
  read_clock_and_budget();
  acceptor_.arm_all();
  arm_tick();
}

void Shard::run() {
  start();
  IdlePoll idle(config_.idle_poll);
  unsigned handled = 0;
  while (!finished()) {
    before_wait();
    if (handled != 0) {
      idle.worked();
    }
    if (!counted_finished_) {
      handled = loop_.poll_while(idle);
      if (handled != 0) {
        continue;
      }
    }
    idle.sleeping();
    if (counted_finished_) {
      __kernel_timespec ts = to_kernel_timespec(kFinishPoll);
      handled = loop_.wait(&ts);
    } else {
      handled = loop_.wait();
    }
    idle.woke();
  }
  end_run();
}

unsigned Shard::step() {
  before_wait();
  return loop_.poll();
}

void Shard::end_run() {
  publish_counters();
}

void Shard::before_wait() {
  mailbox_.drain_self();
  sender_.flush();
  mailbox_.flush();
  read_clock_and_budget();
  gate_.resume_ready();
  if (acceptor_.waiting_for_room() && lifecycle_.objects() < shared_.table_size) {
    acceptor_.offer_room(shared_.table_size - lifecycle_.objects());
  }
  if (stopping_ && !counted_finished_ && lifecycle_.objects() == 0 && relay_.awaiting_replies() == 0 &&
      !acceptor_.armed()) {
    counted_finished_ = true;
    shared_.finished_shards.fetch_add(1, std::memory_order_acq_rel);
  }
  publish_counters();
}

void Shard::read_clock_and_budget() {
  now_ = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now());
  const MemoryGate::Narrowed narrowed = gate_.update();
  read_.enforce(narrowed);
  if (narrowed.lines_released) {
    release_held_lines();
  }
}

bool Shard::finished() const {
  if (!counted_finished_ || shared_.finished_shards.load(std::memory_order_acquire) < shared_.shard_count ||
      shared_.messages_in_flight.load(std::memory_order_acquire) != 0) {
    return false;
  }
  return mailbox_.nothing_queued();
}

void Shard::charge_pending_lines() {
  memory_.recharge(
      pending_lines_charged_,
      line_.pending().bytes() + line_.pending().size() * kPendingEntryOverheadBytes + line_.held_bytes());
}

void Shard::release_held_lines() {
  for (Connection& conn : lifecycle_.connections()) {
    if (conn.protocol == Protocol::kLine && conn.line_held_count != 0) {
      line_.release_held(conn);
    }
  }
}

void Shard::publish_counters() {
  charge_pending_lines();
  counters_.connections.set(relay_.peer_count());
  counters_.line_connections.set(line_.peer_count());
  counters_.closing_connections.set(lifecycle_.closing());
  counters_.line_pending.set(line_.pending().size());
  counters_.line_held_back.set(line_.held_messages());
  counters_.copied_assembly_bytes.set(assembly_.copied_bytes);
  counters_.copied_out_bytes.set(sender_.copied_out_bytes());
  counters_.copied_reply_bytes.set(sender_.copied_reply_bytes());
  counters_.outbound_queued_bytes.set(sender_.queued_bytes());
  counters_.buffer_bytes_in_use.set(loop_.buffers().bytes_held());
  counters_.read_paused_connections.set(gate_.paused_count());
  counters_.budget_pauses.set(gate_.pauses());
  counters_.frame_timeouts.set(clocks_.frame_timeouts());
  counters_.idle_closes.set(clocks_.idle_closes());
  counters_.cq_overflows.set(loop_.ring().cq_overflows());
}

void Shard::on_completion(const io_uring_cqe& cqe) {
  const std::uint64_t data = cqe.user_data;
  switch (tag_op(data)) {
    case Op::kIgnore: return;
    case Op::kAccept: on_accept(cqe, Protocol::kRelay); return;
    case Op::kAcceptLine: on_accept(cqe, Protocol::kLine); return;
    case Op::kRecv: read_.on_recv(*tag_owner<Connection>(data), cqe); return;
    case Op::kRecvDirect: read_.on_recv_direct(*tag_owner<Connection>(data), cqe); return;
    case Op::kHangupWatch: read_.on_hangup_watch(*tag_owner<Connection>(data), cqe); return;
    case Op::kSend: sender_.on_completion(*tag_owner<Connection>(data), cqe); return;
    case Op::kShutdown: lifecycle_.on_shutdown(*tag_owner<Connection>(data), cqe); return;
    case Op::kClose: lifecycle_.on_close(*tag_owner<Connection>(data), cqe); return;
    case Op::kConnTimer: lifecycle_.on_timer(*tag_owner<Connection>(data), cqe); return;
    case Op::kInbox: mailbox_.on_batch(tag_owner<ShardBatch>(data)); return;
    case Op::kOutbox: mailbox_.on_sent(static_cast<unsigned>(tag_number_of(data)), cqe); return;
    case Op::kShardTimer: on_tick(cqe); return;
    case Op::kStop: on_stop(); return;
  }
  spdlog::critical("shard {}: completion with unknown tag {:#x}", index_, data);
  std::abort();
}

void Shard::MessageRouter::on_message(ShardMessage* message) {
  if (ShardMessage::is_relay_kind(message->kind)) {
    shard_.relay_.on_message(message);
    return;
  }
  shard_.line_.on_message(*static_cast<LineMessage*>(message));
  retire(shard_.memory_, message);
}

void Shard::GateEventsOnShard::on_resumed(Connection& conn) {
  shard_.clocks_.restart_frame_clock(conn, shard_.now_);  // time spent paused is not the client's
  shard_.read_.resume_reading(conn);
}

}  // namespace ringhub
