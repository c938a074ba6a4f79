// EventLoop's turn: buffers back, parked recvs resumed, submit, wait or poll, completions to the
// handler. See transport/uring/event_loop.hpp.
#include "transport/uring/event_loop.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

namespace ringhub::uring {

Result<void> EventLoop::init(const EventLoopConfig& config) {
  task_run_ = config.task_run;
  if (Result<void> ring =
          ring_.init(config.sq_entries, config.cq_entries, config.table_size, config.task_run);
      !ring) {
    return ring;
  }
  auto buffers =
      BufferRing::create(ring_.get(), config.buffer_count, config.buffer_size, config.buffer_residency);
  if (!buffers) {
    ring_.close();
    return buffers.error();
  }
  buffers_ = std::move(*buffers);
  return {};
}

void EventLoop::close() {
  buffers_.reset();
  ring_.close();
}

void EventLoop::return_buffers() {
  buffers_->publish_recycled();
  waiting_.resume_if_buffers(*buffers_, [this](Stream& stream) { handler_.on_buffers_back(stream); });
}

unsigned EventLoop::handle_ready() {
  return ring_.reap([this](const io_uring_cqe& cqe) { handler_.on_completion(cqe); });
}

void EventLoop::check_enter(int ret) const {
  if (enter_failed(ret)) {
    spdlog::critical("{}: io_uring_enter failed: {}", name_, std::strerror(-ret));
    std::abort();  // an impossible internal state: the ring itself is broken
  }
}

unsigned EventLoop::wait(__kernel_timespec* timeout) {
  return_buffers();
  check_enter(ring_.submit_and_wait(timeout));
  return handle_ready();
}

unsigned EventLoop::poll() {
  return_buffers();
  // A cooperative ring says whether an entry has anything to do: a thread that drives several rings
  // then pays one syscall per round, not one per ring. A deferred ring's task work only runs in one.
  if (task_run_ != TaskRun::kCooperative || ring_.needs_enter()) {
    check_enter(ring_.submit_and_get_events());
  }
  return handle_ready();
}

unsigned EventLoop::poll_while(const IdlePoll<>& idle) {
  return_buffers();
  while (idle.should_poll()) {
    check_enter(ring_.submit_and_get_events());  // runs the deferred task work that completes requests
    if (io_uring_cq_ready(ring_.get()) != 0) {
      return handle_ready();
    }
  }
  return 0;
}

void EventLoop::submit() {
  return_buffers();
  check_enter(ring_.submit_and_get_events());
}

}  // namespace ringhub::uring
