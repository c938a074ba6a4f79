// Ring: one io_uring, set up the way every ringhub ring is (hub shards, the hub's control ring and
// client loops alike): single issuer unless it moves between threads, deferred or cooperative task
// work, a large CQ and, when asked for, a sparse direct-descriptor table.
// Beside it, the start-up checks every ring shares: the open-file limit and why io_uring is refused.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>

#include "core/result.hpp"
#include "transport/uring/tag.hpp"

namespace ringhub::uring {

// Raises the soft RLIMIT_NOFILE to the hard one (liburing 2.3's own raise fails silently) and returns
// the soft limit: a ring's direct-descriptor table may not hold more entries than that.
Result<unsigned> raise_open_file_limit();

// The value of the kernel.io_uring_disabled sysctl (0 = allowed, 1 = only kernel.io_uring_group and
// CAP_SYS_ADMIN, 2 = nobody), or nullopt where the kernel has no such sysctl (before Linux 6.6).
std::optional<int> read_io_uring_disabled();

// Why io_uring_setup failed with `error` (an errno) and what fixes it: the sysctl when it is set,
// otherwise a seccomp filter (the container runtime's default profile) or a kernel without io_uring.
// Pure, so both causes can be tested; the caller passes read_io_uring_disabled().
std::string describe_io_uring_failure(int error, std::optional<int> io_uring_disabled);

// io_uring_enter results that only mean "nothing to do this time" (a timeout, a signal, a full
// CQ that the reap empties); anything else means the ring itself is broken.
inline bool enter_failed(int ret) {
  return ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY && ret != -EAGAIN;
}

// How a ring runs the kernel-side work that completes its requests (a socket became readable...).
enum class TaskRun {
  // DEFER_TASKRUN: the work waits until the ring's thread enters io_uring for this ring, in batches.
  // Cheapest for a thread that waits inside this ring's enter: a thread with one ring.
  kDeferred,
  // COOP_TASKRUN: the work runs on the thread's next entry to the kernel, whatever the syscall, and a
  // thread asleep elsewhere (poll() on an eventfd) is woken for it. For a thread with several rings,
  // where DEFER_TASKRUN lost wake-ups (docs/design.md, "Threads, shards and rings").
  kCooperative,
  // COOP_TASKRUN without SINGLE_ISSUER: any thread may submit, one at a time. For a ring owned by an
  // object that moves between threads (the blocking relay client), at the cost of the issuer checks.
  kAnyThread,
};

// Contract: init() on the thread that will use the ring (it becomes the single issuer); every other
// call on that thread too, except fd(), which other threads use as a MSG_RING target. A kAnyThread ring
// may be used from any thread, one at a time.
class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { close(); }

  // SINGLE_ISSUER (except kAnyThread) | CQSIZE | SUBMIT_ALL and `task_run`'s flags, checks FEAT_NODROP,
  // registers a sparse table of `table_size` direct descriptors (none for 0) and the ring fd. On failure the
  // ring is torn down and the error names what the kernel lacks.
  Result<void> init(unsigned sq_entries, unsigned cq_entries, unsigned table_size,
                    TaskRun task_run = TaskRun::kDeferred);
  // Tears the ring down (idempotent): for owners that must end in-flight work before other members go.
  void close();

  bool ready() const { return ready_; }
  io_uring* get() { return &ring_; }
  int fd() const { return ring_.ring_fd; }

  // The next free SQE; when the submission queue is full, hands what is queued to the kernel first.
  io_uring_sqe* next_sqe();
  // Cancels the request whose user_data is `target`, or removes the timeout so tagged. Their own completions
  // are kUnwatched; the target's still comes (-ECANCELED, or its result if it finished first) and is the one
  // its owner counts.
  void cancel(std::uint64_t target);
  void remove_timeout(std::uint64_t target);
  // Moves the timeout tagged `target` to fire after `after` from now (`after` must outlive the submit).
  // Its own completion is kUnwatched; the timeout's comes when it fires, as before.
  void update_timeout(std::uint64_t target, __kernel_timespec* after);
  // Submits what is queued and waits for one completion, or until `timeout` when given. Returns
  // io_uring_enter's result: check it with enter_failed().
  int submit_and_wait(__kernel_timespec* timeout = nullptr);
  // Submits what is queued and runs the deferred task work that is ready, never blocking: completions
  // it produced are then in the CQ for reap().
  int submit_and_get_events() { return io_uring_submit_and_get_events(&ring_); }
  // Whether submit_and_get_events() has anything to do on a kCooperative ring: SQEs queued, task work
  // pending (TASKRUN_FLAG) or completions waiting in the overflow list. Without this a thread that
  // drives several rings pays one syscall per ring per round instead of one per round.
  bool needs_enter() const {
    const unsigned flags = IO_URING_READ_ONCE(*ring_.sq.kflags);
    return io_uring_sq_ready(&ring_) != 0 || (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
  }
  // Makes the kernel signal `event_fd` whenever this ring posts a completion; returns 0 or -errno.
  // Sleeping on it is reliable for a TaskRun::kCooperative ring (docs/design.md).
  int register_eventfd(int event_fd) { return io_uring_register_eventfd(&ring_, event_fd); }
  // Hands every ready completion to on_cqe(const io_uring_cqe&), then frees their CQ slots at once.
  template <typename OnCqe>
  unsigned reap(OnCqe&& on_cqe) {
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      on_cqe(*cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    return seen;
  }
  // Completions the kernel had to hold back because the CQ was full (FEAT_NODROP: late, not lost).
  std::uint64_t cq_overflows() const;
  // Whether the running kernel knows `opcode`.
  bool supports(int opcode);

 private:
  io_uring ring_{};
  bool ready_ = false;
};

}  // namespace ringhub::uring
