// Tests for the start-up error when io_uring is refused (transport/uring/ring): the message names the
// cause and the fix, and the real hub binary, run under a seccomp filter that refuses io_uring_setup the
// way Docker's (EPERM) and podman's (ENOSYS) default profiles do, exits non-zero with that message.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "transport/uring/ring.hpp"

namespace ringhub {
namespace {

// The flag a refused hub must name, and the sysctl, exactly as README.md gives them.
constexpr const char* kProfileFlag = "--security-opt seccomp=deploy/seccomp-ringhub.json";
constexpr const char* kSysctlFix = "sysctl -w kernel.io_uring_disabled=0";
// The child's exit code when it cannot set up the simulation (no CAP_SYS_ADMIN for a mount namespace).
constexpr int kCannotSimulate = 77;

TEST(DescribeIoUringFailure, SeccompRefusalNamesTheProfileFlag) {
  const std::string eperm = uring::describe_io_uring_failure(EPERM, 0);
  EXPECT_NE(eperm.find("seccomp filter"), std::string::npos) << eperm;
  EXPECT_NE(eperm.find(kProfileFlag), std::string::npos) << eperm;
  const std::string enosys = uring::describe_io_uring_failure(ENOSYS, std::nullopt);
  EXPECT_NE(enosys.find(kProfileFlag), std::string::npos) << enosys;
  EXPECT_NE(enosys.find("CONFIG_IO_URING"), std::string::npos) << enosys;
}

TEST(DescribeIoUringFailure, DisabledSysctlNamesTheSysctlNotSeccomp) {
  const std::string off = uring::describe_io_uring_failure(EPERM, 2);
  EXPECT_NE(off.find("kernel.io_uring_disabled = 2"), std::string::npos) << off;
  EXPECT_NE(off.find(kSysctlFix), std::string::npos) << off;
  EXPECT_EQ(off.find("seccomp"), std::string::npos) << off;
  const std::string group_only = uring::describe_io_uring_failure(EPERM, 1);
  EXPECT_NE(group_only.find("kernel.io_uring_group"), std::string::npos) << group_only;
  EXPECT_NE(group_only.find(kSysctlFix), std::string::npos) << group_only;
}

TEST(DescribeIoUringFailure, OtherErrorsBlameTheKernelVersion) {
  const std::string einval = uring::describe_io_uring_failure(EINVAL, 0);
  EXPECT_NE(einval.find("Linux 6.1"), std::string::npos) << einval;
  EXPECT_EQ(einval.find("seccomp"), std::string::npos) << einval;
}

// A filter answering io_uring_setup with `error` and allowing everything else. It does not check the
// architecture: the hub makes native syscalls only, and a wrong match could only refuse more.
struct RefusingFilter {
  explicit RefusingFilter(int error)
      : code{
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(error) & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        } {}
  sock_filter code[4];
  sock_fprog program{static_cast<unsigned short>(std::size(code)), code};
};

struct HubExit {
  int status = 0;
  std::string output;  // stdout and stderr together
};

// Hides the host's io_uring_disabled behind a file holding `value`, in a mount namespace of our own, so
// the host's sysctl is never touched. Child side of fork: returns false when it cannot.
bool mask_io_uring_disabled(const char* value_file) {
  return unshare(CLONE_NEWNS) == 0 && mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
         mount(value_file, "/proc/sys/kernel/io_uring_disabled", nullptr, MS_BIND, nullptr) == 0;
}

// Runs the hub on free ports with io_uring_setup refused by `filter`; `sysctl_file`, when given, is
// what the hub reads as kernel.io_uring_disabled. A hub that starts anyway would block: ctest's
// timeout fails the test then.
HubExit run_refused_hub(const RefusingFilter& filter, const char* sysctl_file = nullptr) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return {};
  }
  const pid_t child = fork();
  if (child == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    if (sysctl_file != nullptr && !mask_io_uring_disabled(sysctl_file)) {
      _exit(kCannotSimulate);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter.program) != 0) {
      _exit(kCannotSimulate);
    }
    execl(RINGHUB_HUB_BIN, RINGHUB_HUB_BIN, "--relay-port", "0", "--line-port", "0", "--admin-port", "0",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  HubExit result;
  char chunk[4096];
  ssize_t got = 0;
  while ((got = read(pipe_fds[0], chunk, sizeof chunk)) > 0 || (got < 0 && errno == EINTR)) {
    result.output.append(chunk, static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
  }
  close(pipe_fds[0]);
  EXPECT_EQ(waitpid(child, &result.status, 0), child);
  return result;
}

void skip_unless_host_allows_io_uring() {
  if (uring::read_io_uring_disabled().value_or(0) != 0) {
    GTEST_SKIP() << "kernel.io_uring_disabled is set here, so the hub would rightly blame the sysctl";
  }
}

void expect_refused_with(const HubExit& hub, const char* fix) {
  ASSERT_TRUE(WIFEXITED(hub.status)) << hub.output;
  ASSERT_NE(WEXITSTATUS(hub.status), kCannotSimulate) << "could not install the seccomp filter";
  EXPECT_EQ(WEXITSTATUS(hub.status), EXIT_FAILURE) << hub.output;
  EXPECT_NE(hub.output.find("io_uring_setup failed"), std::string::npos) << hub.output;
  EXPECT_NE(hub.output.find(fix), std::string::npos) << hub.output;
  EXPECT_EQ(hub.output.find("ringhub ready"), std::string::npos) << hub.output;
}

TEST(HubIoUringRefused, DockerStyleEpermExitsNamingTheProfile) {
  skip_unless_host_allows_io_uring();
  expect_refused_with(run_refused_hub(RefusingFilter(EPERM)), kProfileFlag);
}

TEST(HubIoUringRefused, PodmanStyleEnosysExitsNamingTheProfile) {
  skip_unless_host_allows_io_uring();
  expect_refused_with(run_refused_hub(RefusingFilter(ENOSYS)), kProfileFlag);
}

TEST(HubIoUringRefused, DisabledSysctlExitsNamingTheSysctl) {
  char path[] = "/tmp/io_uring_disabled.XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(write(fd, "2\n", 2), 2);
  close(fd);
  // The kernel refuses io_uring_setup with EPERM when the sysctl is 2: the filter plays that part.
  const HubExit hub = run_refused_hub(RefusingFilter(EPERM), path);
  unlink(path);
  if (WIFEXITED(hub.status) && WEXITSTATUS(hub.status) == kCannotSimulate) {
    GTEST_SKIP() << "no private mount namespace here (needs CAP_SYS_ADMIN) to mask the sysctl";
  }
  expect_refused_with(hub, kSysctlFix);
  EXPECT_EQ(hub.output.find("seccomp"), std::string::npos) << hub.output;
}

}  // namespace
}  // namespace ringhub
