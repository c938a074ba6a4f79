// Ring set-up shared by hub shards and the stress harness; see transport/ring_setup.hpp.
#include "transport/ring_setup.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace ringhub {

Result<unsigned> raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return make_error(fmt::format("getrlimit(RLIMIT_NOFILE): {}", std::strerror(errno)), errno);
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    }
  }
  return static_cast<unsigned>(std::min<rlim_t>(limit.rlim_cur, 1U << 20));  // the kernel's table cap
}

Result<void> setup_issuer_ring(io_uring* ring, unsigned sq_entries, unsigned cq_entries,
                               unsigned table_size) {
  io_uring_params params{};
  // SINGLE_ISSUER + DEFER_TASKRUN: only this thread submits, and completions run when it asks for
  // them, in batches, instead of interrupting it. CQSIZE: room for bursts between two reaps.
  // SUBMIT_ALL: one bad SQE must not strand the ones behind it.
  params.flags =
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  params.cq_entries = cq_entries;
  int ret = io_uring_queue_init_params(sq_entries, ring, &params);
  if (ret < 0) {
    return make_error(
        fmt::format("io_uring_setup with SINGLE_ISSUER|DEFER_TASKRUN failed: {} (needs Linux 6.1+ "
                    "with io_uring enabled; in Docker the default seccomp profile may block it)",
                    std::strerror(-ret)),
        -ret);
  }
  if ((params.features & IORING_FEAT_NODROP) == 0) {
    io_uring_queue_exit(ring);
    return make_error("io_uring lacks IORING_FEAT_NODROP (needs Linux 5.5+)");
  }
  ret = io_uring_register_files_sparse(ring, table_size);
  if (ret < 0) {
    io_uring_queue_exit(ring);
    return make_error(
        fmt::format("cannot register a direct-descriptor table of {} slots: {} (a table may hold at "
                    "most RLIMIT_NOFILE entries)",
                    table_size, std::strerror(-ret)),
        -ret);
  }
  io_uring_register_ring_fd(ring);  // an optimisation only: failure leaves the plain fd path
  return {};
}

}  // namespace ringhub
