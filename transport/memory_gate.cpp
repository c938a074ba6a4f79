// MemoryGate: the budget's verdicts on reading, the connections paused by them and the reservations of
// large frames; see transport/memory_gate.hpp.
#include "transport/memory_gate.hpp"

#include <algorithm>
#include <atomic>

namespace ringhub {

MemoryGate::Narrowed MemoryGate::update() {
  hub_memory_ = shared_.memory_committed();
  Narrowed narrowed;
  const ReadGate before = verdict_;
  verdict_ = shared_.budget.gate(hub_memory_);
  narrowed.gate = verdict_ > before;
  const bool was_wide = wide_read_ahead_;
  wide_read_ahead_ = shared_.budget.allows_wide_read_ahead(hub_memory_, was_wide);
  narrowed.read_ahead = was_wide && !wide_read_ahead_;
  const bool was_holding_back = holding_back_lines_;
  holding_back_lines_ = shared_.budget.holds_back_lines(hub_memory_, was_holding_back);
  narrowed.lines_released = was_holding_back && !holding_back_lines_;
  throttling_held_lines_ = shared_.budget.throttles_held_lines(hub_memory_, throttling_held_lines_);
  return narrowed;
}

bool MemoryGate::must_pause(const Connection& conn) const {
  if (conn.frame_reserved) {
    return false;  // its frame is paid for: reading it to the end adds nothing the gate has not seen
  }
  switch (verdict_) {
    case ReadGate::kOpen: return false;
    case ReadGate::kLightOnly: return weight_of(conn) == Weight::kHeavy;
    case ReadGate::kClosed: return true;
  }
  return true;
}

void MemoryGate::pause(Connection& conn) {
  conn.read_paused = true;
  paused_[static_cast<int>(weight_of(conn))].push_back(conn);
  ++paused_count_;
  ++pauses_;
}

void MemoryGate::await_reservation(Connection& conn) {
  conn.read_paused = true;
  awaiting_reservation_.push_back(conn);
  ++paused_count_;
  ++pauses_;
}

void MemoryGate::throttle_lines(Connection& conn) {
  conn.line_throttled = true;
  conn.stop_waiting();
  throttled_lines_.push_back(conn);
  ++paused_count_;
}

void MemoryGate::end_line_throttle(Connection& conn) {
  if (conn.waiting()) {  // on throttled_lines_: a throttled line connection waits on nothing else
    conn.stop_waiting();
    --paused_count_;
  }
  conn.line_throttled = false;
}

void MemoryGate::resume_ready() {
  grant_reservations();
  while (!throttling_held_lines_ && !throttled_lines_.empty()) {
    Connection& conn = throttled_lines_.front();
    end_line_throttle(conn);
    events_.on_resumed(conn);
  }
  for (const Weight weight : {Weight::kLight, Weight::kHeavy}) {
    Connection::WaitingList& paused = paused_[static_cast<int>(weight)];
    if (!paused.empty() && shared_.budget.may_resume(hub_memory_, weight)) {
      let_in(paused);
    }
  }
}

void MemoryGate::forget(Connection& conn) {
  end_reservation(conn);
  if (conn.line_throttled) {
    end_line_throttle(conn);
  }
  if (conn.read_paused) {
    conn.read_paused = false;
    conn.stop_waiting();
    --paused_count_;
  }
}

void MemoryGate::let_in(Connection::WaitingList& list) {
  while (!list.empty()) {
    Connection& conn = list.front();
    list.pop_front();
    unpause(conn);
    events_.on_resumed(conn);
  }
}

void MemoryGate::unpause(Connection& conn) {
  conn.read_paused = false;
  --paused_count_;
}

bool MemoryGate::reserve_large_frame(Connection& conn, bool only_if_none_under_way) {
  const std::uint32_t filled = conn.assembler.partial_frame_filled();
  const std::int64_t need = conn.assembler.partial_frame_size() - filled;
  std::atomic<std::int64_t>& reservations = shared_.frame_reservations;
  if (only_if_none_under_way) {
    // However full memory is, one large frame at a time always proceeds: what the waiting frames
    // already hold can then never keep every one of them waiting for good.
    std::int64_t none = 0;
    if (!shared_.large_frames_under_way.compare_exchange_strong(none, 1, std::memory_order_relaxed)) {
      return false;
    }
    reservations.fetch_add(need, std::memory_order_relaxed);
  } else {
    // Atomic across shards, so together they never reserve past the low watermark: the 3/8 above it
    // holds what light clients read ahead before they are known to be starting large frames (a
    // receive buffer each) and light traffic itself.
    const std::int64_t reserved = reservations.fetch_add(need, std::memory_order_relaxed) + need;
    if (shared_.memory_in_use() + reserved > static_cast<std::int64_t>(shared_.budget.low_watermark())) {
      reservations.fetch_sub(need, std::memory_order_relaxed);
      return false;
    }
    shared_.large_frames_under_way.fetch_add(1, std::memory_order_relaxed);
  }
  conn.frame_reserved = true;
  conn.reserved_bytes = static_cast<std::uint32_t>(need);
  conn.charged_through = filled;
  return true;
}

void MemoryGate::grant_reservations() {
  while (!awaiting_reservation_.empty()) {
    Connection& conn = awaiting_reservation_.front();
    // A connection whose frame is gone (its assembler was reset) needs no room: reserving nothing would
    // still count it as the one large frame under way and keep every other frame waiting behind it.
    const bool needs_room = conn.assembler.wants_direct();
    if (needs_room && !reserve_large_frame(conn, false) && !reserve_large_frame(conn, true)) {
      return;  // first come, first served: the next in line waits for this one
    }
    awaiting_reservation_.pop_front();
    unpause(conn);
    events_.on_resumed(conn);
  }
}

void MemoryGate::consume_reservation(Connection& conn, std::uint32_t charged_through) {
  if (!conn.frame_reserved || charged_through <= conn.charged_through) {
    return;
  }
  const std::uint32_t now_charged = std::min(charged_through - conn.charged_through, conn.reserved_bytes);
  conn.reserved_bytes -= now_charged;
  conn.charged_through = charged_through;
  shared_.frame_reservations.fetch_sub(now_charged, std::memory_order_relaxed);
}

void MemoryGate::end_reservation(Connection& conn) {
  if (!conn.frame_reserved) {
    return;
  }
  shared_.frame_reservations.fetch_sub(conn.reserved_bytes, std::memory_order_relaxed);
  shared_.large_frames_under_way.fetch_sub(1, std::memory_order_relaxed);
  conn.frame_reserved = false;
  conn.reserved_bytes = 0;
  conn.charged_through = 0;
}

}  // namespace ringhub
