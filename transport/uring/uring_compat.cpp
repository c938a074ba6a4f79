// liburing 2.3 gap fillers shared by every ring in ringhub; see transport/uring/uring_compat.hpp.
#include "transport/uring/uring_compat.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ringhub::uring_compat {

std::size_t whole_pages(std::size_t bytes) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

namespace {

std::size_t buf_ring_mapping_bytes(unsigned entries) {
  return whole_pages(entries * sizeof(io_uring_buf));
}

}  // namespace

io_uring_buf_ring* setup_buf_ring(io_uring* ring, unsigned entries, unsigned group_id, int* error) {
  const std::size_t bytes = buf_ring_mapping_bytes(entries);
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (memory == MAP_FAILED) {
    *error = -errno;
    return nullptr;
  }
  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof reg);  // flags (called `pad` in 2.3) stay 0: whole buffers
  reg.ring_addr = reinterpret_cast<std::uint64_t>(memory);
  reg.ring_entries = entries;
  reg.bgid = static_cast<std::uint16_t>(group_id);
  const int ret = io_uring_register_buf_ring(ring, &reg, 0);
  if (ret < 0) {
    munmap(memory, bytes);
    *error = ret;
    return nullptr;
  }
  auto* buf_ring = static_cast<io_uring_buf_ring*>(memory);
  io_uring_buf_ring_init(buf_ring);
  return buf_ring;
}

void free_buf_ring(io_uring* ring, io_uring_buf_ring* buf_ring, unsigned entries, unsigned group_id) {
  io_uring_unregister_buf_ring(ring, static_cast<int>(group_id));
  munmap(buf_ring, buf_ring_mapping_bytes(entries));
}

bool opcode_supported(io_uring* ring, int opcode) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (probe == nullptr) {
    return false;
  }
  const bool supported = io_uring_opcode_supported(probe, opcode) != 0;
  io_uring_free_probe(probe);
  return supported;
}

}  // namespace ringhub::uring_compat
