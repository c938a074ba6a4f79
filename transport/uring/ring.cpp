// Ring set-up, submission and reaping shared by hub shards and client loops; see
// transport/uring/ring.hpp.
#include "transport/uring/ring.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "transport/tsan_annotations.hpp"
#include "transport/uring/uring_compat.hpp"

namespace ringhub::uring {

namespace {

// Where the kernel publishes the io_uring_disabled sysctl; read-only but readable in containers too.
constexpr const char* kIoUringDisabledPath = "/proc/sys/kernel/io_uring_disabled";

// The profile shipped with ringhub: the runtime's default seccomp profile plus the three io_uring
// syscalls (README.md, Docker and podman). Named in every refusal message, in a container or not.
constexpr const char* kSeccompFix =
    "allow io_uring_setup, io_uring_enter and io_uring_register in that filter; in Docker or podman, "
    "whose default profiles block those three (Docker 25+, containerd), run the container with "
    "--security-opt seccomp=deploy/seccomp-ringhub.json";

std::string describe_disabled_sysctl(int value) {
  if (value >= 2) {
    return "the kernel refuses io_uring to every process (sysctl kernel.io_uring_disabled = 2); fix: "
           "on the host, sysctl -w kernel.io_uring_disabled=0";
  }
  return "the kernel allows io_uring only to CAP_SYS_ADMIN and the group in kernel.io_uring_group "
         "(sysctl kernel.io_uring_disabled = 1); fix: on the host, sysctl -w kernel.io_uring_disabled=0, "
         "or sysctl -w kernel.io_uring_group=GID with a group the hub's user is in";
}

}  // namespace

std::optional<int> read_io_uring_disabled() {
  std::ifstream file(kIoUringDisabledPath);
  int value = 0;
  if (!(file >> value)) {
    return std::nullopt;
  }
  return value;
}

std::string describe_io_uring_failure(int error, std::optional<int> io_uring_disabled) {
  const std::string failed = fmt::format("io_uring_setup failed: {}", std::strerror(error));
  if (error == EPERM && io_uring_disabled.value_or(0) != 0) {
    return fmt::format("{}: {}", failed, describe_disabled_sysctl(*io_uring_disabled));
  }
  if (error == EPERM) {
    return fmt::format("{}: a seccomp filter refuses io_uring; fix: {}", failed, kSeccompFix);
  }
  if (error == ENOSYS) {  // podman's default profile answers ENOSYS, as does a kernel without io_uring
    return fmt::format(
        "{}: a seccomp filter refuses io_uring, or the kernel lacks it (CONFIG_IO_URING); "
        "fix: {}",
        failed, kSeccompFix);
  }
  return fmt::format("{} (ringhub needs Linux 6.1+)", failed);
}

Result<unsigned> raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return system_error(errno, fmt::format("getrlimit(RLIMIT_NOFILE): {}", std::strerror(errno)));
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

namespace {

// liburing maps a ring's queues with raw syscalls that ThreadSanitizer does not see, so when a ring
// closed on one thread is followed by a ring on another thread at the same addresses, the new owner's
// writes look like a race with the old owner's. Every close releases this, every set-up acquires it:
// the edge the kernel's munmap/mmap really provides.
char ring_memory_handoff;

}  // namespace

Result<void> Ring::init(unsigned sq_entries, unsigned cq_entries, unsigned table_size, TaskRun task_run) {
  io_uring_params params{};
  // SINGLE_ISSUER: only this thread submits. DEFER_TASKRUN: completions run when it asks for them, in
  // batches, instead of interrupting it; COOP_TASKRUN: they run at its next syscall, without an IPI
  // while it runs, and TASKRUN_FLAG tells liburing to enter for them. CQSIZE: room for bursts between
  // two reaps. SUBMIT_ALL: one bad SQE must not strand the ones behind it.
  params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  if (task_run != TaskRun::kAnyThread) {
    params.flags |= IORING_SETUP_SINGLE_ISSUER;
  }
  params.flags |= task_run == TaskRun::kDeferred ? IORING_SETUP_DEFER_TASKRUN
                                                 : IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  params.cq_entries = cq_entries;
  int ret = io_uring_queue_init_params(sq_entries, &ring_, &params);
  RINGHUB_TSAN_ACQUIRE(&ring_memory_handoff);
  if (ret < 0) {
    return system_error(-ret, describe_io_uring_failure(-ret, read_io_uring_disabled()));
  }
  ready_ = true;
  if ((params.features & IORING_FEAT_NODROP) == 0) {
    close();
    return make_error("io_uring lacks IORING_FEAT_NODROP (needs Linux 5.5+)");
  }
  ret = table_size == 0 ? 0 : io_uring_register_files_sparse(&ring_, table_size);
  if (ret < 0) {
    close();
    return system_error(
        -ret, fmt::format("cannot register a direct-descriptor table of {} slots: {} (a table may hold at "
                          "most RLIMIT_NOFILE entries)",
                          table_size, std::strerror(-ret)));
  }
  if (task_run != TaskRun::kAnyThread) {
    // An optimisation only: failure leaves the plain fd path. Registered per thread, so not for a ring
    // that changes threads: there another thread's enter would name an index it does not have.
    io_uring_register_ring_fd(&ring_);
  }
  return {};
}

void Ring::close() {
  if (ready_) {
    RINGHUB_TSAN_RELEASE(&ring_memory_handoff);
    io_uring_queue_exit(&ring_);
    ready_ = false;
  }
}

io_uring_sqe* Ring::next_sqe() {
  io_uring_sqe* entry = io_uring_get_sqe(&ring_);
  while (entry == nullptr) {
    io_uring_submit(&ring_);
    entry = io_uring_get_sqe(&ring_);
  }
  return entry;
}

void Ring::cancel(std::uint64_t target) {
  io_uring_sqe* entry = next_sqe();
  io_uring_prep_cancel64(entry, target, 0);
  io_uring_sqe_set_data64(entry, kUnwatched);
}

void Ring::remove_timeout(std::uint64_t target) {
  io_uring_sqe* entry = next_sqe();
  io_uring_prep_timeout_remove(entry, target, 0);
  io_uring_sqe_set_data64(entry, kUnwatched);
}

void Ring::update_timeout(std::uint64_t target, __kernel_timespec* after) {
  io_uring_sqe* entry = next_sqe();
  io_uring_prep_timeout_update(entry, after, target, 0);
  io_uring_sqe_set_data64(entry, kUnwatched);
}

int Ring::submit_and_wait(__kernel_timespec* timeout) {
  if (timeout == nullptr) {
    return io_uring_submit_and_wait(&ring_, 1);
  }
  io_uring_cqe* first = nullptr;
  return io_uring_submit_and_wait_timeout(&ring_, &first, 1, timeout, nullptr);
}

std::uint64_t Ring::cq_overflows() const {
  return ring_.cq.koverflow != nullptr ? *ring_.cq.koverflow : 0;
}

bool Ring::supports(int opcode) {
  return uring_compat::opcode_supported(&ring_, opcode);
}

}  // namespace ringhub::uring
