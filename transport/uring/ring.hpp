// Ring: one thread's io_uring, set up the way every ringhub thread uses one (hub shards and client
// loops alike): single issuer, deferred task work, a large CQ and a sparse direct-descriptor table.
// Beside it, the start-up checks every ring shares: the open-file limit and why io_uring is refused.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>

#include "core/result.hpp"

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

// Contract: init() on the thread that will use the ring (it becomes the single issuer); every other
// call on that thread too, except fd(), which other threads use as a MSG_RING target.
class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() { close(); }

  // SINGLE_ISSUER | DEFER_TASKRUN | CQSIZE | SUBMIT_ALL, checks FEAT_NODROP, registers a sparse table
  // of `table_size` direct descriptors and the ring fd. On failure the ring is torn down and the error
  // names what the kernel lacks.
  Result<void> init(unsigned sq_entries, unsigned cq_entries, unsigned table_size);
  // Tears the ring down (idempotent): for owners that must end in-flight work before other members go.
  void close();

  bool ready() const { return ready_; }
  io_uring* get() { return &ring_; }
  int fd() const { return ring_.ring_fd; }

  // The next free SQE; when the submission queue is full, hands what is queued to the kernel first.
  io_uring_sqe* next_sqe();
  // Submits what is queued and waits for one completion, or until `timeout` when given. Returns
  // io_uring_enter's result: check it with enter_failed().
  int submit_and_wait(__kernel_timespec* timeout = nullptr);
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
