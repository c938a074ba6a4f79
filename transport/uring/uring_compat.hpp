// The one place for io_uring pieces Debian 12's liburing 2.3 lacks, used by every ring in ringhub (hub
// shards and client loops), so the code builds against 2.3 and 2.9 alike. Own names only: never
// #define or declare a name that a newer header declares. Each piece names the kernel that brought it.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

namespace ringhub::uring_compat {

// `bytes` rounded up to whole pages: the length to mmap and munmap memory a ring uses. The kernel maps
// whole pages anyway; naming them lets ThreadSanitizer's munmap forget every access to them. Told a
// shorter length it clears only part of the last page's history, and when liburing maps another
// thread's ring queues there next (with syscalls TSan does not see), that thread inherits it as races.
std::size_t whole_pages(std::size_t bytes);

// io_uring_setup_buf_ring() arrived in liburing 2.4: maps ring memory for `entries` buffers,
// registers it as group `group_id` and initialises it. Returns the ring or nullptr with -errno in
// `error`. Free with free_buf_ring().
io_uring_buf_ring* setup_buf_ring(io_uring* ring, unsigned entries, unsigned group_id, int* error);
void free_buf_ring(io_uring* ring, io_uring_buf_ring* buf_ring, unsigned entries, unsigned group_id);

// Linux 6.15+: a multishot recv ends (a CQE without IORING_CQE_F_MORE) once it has received `bytes`
// in all. The field is sqe->optlen in newer headers, the same word as file_index in 2.3's; older
// kernels refuse a recv with it set (-EINVAL), which the caller takes as "not supported".
inline void set_multishot_total_limit(io_uring_sqe* sqe, std::uint32_t bytes) {
  sqe->file_index = bytes;
}

// A single accept into a slot the kernel picks from the direct-descriptor table (Linux 5.19). liburing
// 2.3's io_uring_prep_accept_direct stores IORING_FILE_INDEX_ALLOC + 1, which wraps to 0, a plain
// accept into the process's fd table; 2.4 and later subtract 1 first. This sets the field itself.
inline void prep_accept_direct_alloc(io_uring_sqe* sqe, int listen_fd) {
  io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, 0);
  sqe->file_index = IORING_FILE_INDEX_ALLOC;
}

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
// value's address from `addr3` (the 2.5+ header names them level, optname, optlen, optval). `value`
// must outlive the SQE: the kernel reads it when the operation runs.
inline void prep_setsockopt_direct(io_uring_sqe* sqe, unsigned slot, int level, int name, const int* value) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, static_cast<int>(slot), nullptr, 0, 0);
  sqe->cmd_op = kSocketCmdSetsockopt;
  sqe->addr = static_cast<std::uint32_t>(level) | (std::uint64_t{static_cast<std::uint32_t>(name)} << 32);
  sqe->file_index = sizeof(int);
  sqe->addr3 = reinterpret_cast<std::uint64_t>(value);
  sqe->flags |= IOSQE_FIXED_FILE;
}

// Whether the running kernel knows `opcode` (IORING_REGISTER_PROBE); false when it cannot be probed.
bool opcode_supported(io_uring* ring, int opcode);

}  // namespace ringhub::uring_compat
