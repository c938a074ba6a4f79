// Raw-SQE preparations for io_uring operations newer than Debian 12's liburing 2.3 headers, used by the
// stress harness's client rings. Own names only (never a name a newer liburing declares); each says the
// kernel that brought it, so a caller can probe and fall back.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>

namespace ringhub::stress::uring_extra {

// IORING_OP_BIND (Linux 6.11): bind(2) on a direct descriptor. liburing 2.7's io_uring_prep_bind.
inline constexpr int kOpBind = 56;
// IORING_OP_URING_CMD sub-command SOCKET_URING_OP_SETSOCKOPT (Linux 6.7): setsockopt(2) on a direct
// descriptor, which a plain setsockopt cannot reach.
inline constexpr std::uint32_t kSocketCmdSetsockopt = 3;

inline void prep_bind_direct(io_uring_sqe* sqe, unsigned slot, const sockaddr* addr, socklen_t length) {
  io_uring_prep_rw(kOpBind, sqe, static_cast<int>(slot), addr, 0, length);  // addr2 (= off): the length
  sqe->flags |= IOSQE_FIXED_FILE;
}

// The kernel reads level and optname from the two halves of `addr`, optlen from `file_index` and the
// value's address from `addr3` (the 2.5+ header names them level, optname, optlen, optval).
inline void prep_setsockopt_direct(io_uring_sqe* sqe, unsigned slot, int level, int name, const int* value) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, static_cast<int>(slot), nullptr, 0, 0);
  sqe->cmd_op = kSocketCmdSetsockopt;
  sqe->addr = static_cast<std::uint32_t>(level) | (std::uint64_t{static_cast<std::uint32_t>(name)} << 32);
  sqe->file_index = sizeof(int);
  sqe->addr3 = reinterpret_cast<std::uint64_t>(value);
  sqe->flags |= IOSQE_FIXED_FILE;
}

// Whether the running kernel knows `opcode` (IORING_REGISTER_PROBE).
inline bool opcode_supported(io_uring* ring, int opcode) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) {
    return false;
  }
  const bool supported = io_uring_opcode_supported(probe, opcode) != 0;
  io_uring_free_probe(probe);
  return supported;
}

}  // namespace ringhub::stress::uring_extra
