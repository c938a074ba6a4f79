// The one place for io_uring pieces Debian 12's liburing 2.3 lacks, so the code builds against 2.3
// and 2.9 alike. Own names only: never #define a name that a newer header declares.
#pragma once

#include <liburing.h>

#include <cstdint>

namespace ringhub::uring_compat {

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

}  // namespace ringhub::uring_compat
