// Setting up an io_uring the way every ringhub thread uses one (hub shards and the stress harness's
// engines alike): single issuer, deferred task work, a large CQ, and a sparse direct-descriptor table.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <optional>
#include <string>

#include "core/result.hpp"

namespace ringhub {

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

// Creates `ring` on the calling thread (it becomes the single issuer) with SINGLE_ISSUER |
// DEFER_TASKRUN | CQSIZE | SUBMIT_ALL, checks FEAT_NODROP, registers a sparse table of `table_size`
// direct descriptors and the ring fd. On failure the ring is torn down and the error names what the
// kernel lacks.
Result<void> setup_issuer_ring(io_uring* ring, unsigned sq_entries, unsigned cq_entries, unsigned table_size);

// io_uring_enter results that only mean "nothing to do this time" (a timeout, a signal, a full
// CQ that the reap below empties); anything else means the ring itself is broken.
inline bool enter_failed(int ret) {
  return ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY && ret != -EAGAIN;
}

// Hands every ready completion to on_cqe(const io_uring_cqe&), then frees their CQ slots at once.
template <typename OnCqe>
unsigned reap_completions(io_uring* ring, OnCqe&& on_cqe) {
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(ring, head, cqe) {
    on_cqe(*cqe);
    ++seen;
  }
  io_uring_cq_advance(ring, seen);
  return seen;
}

// The next free SQE; when the submission queue is full, hands what is queued to the kernel first.
inline io_uring_sqe* next_sqe(io_uring* ring) {
  io_uring_sqe* entry = io_uring_get_sqe(ring);
  while (entry == nullptr) {
    io_uring_submit(ring);
    entry = io_uring_get_sqe(ring);
  }
  return entry;
}

}  // namespace ringhub
