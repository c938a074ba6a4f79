// memcpy bandwidth: copies copy_size bytes per call for duration_s, after one untimed pass that
// faults every page in; see memcpy_bandwidth.hpp.
#include "perf/limits/memcpy_bandwidth.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <vector>

namespace ringhub::limits {

namespace {

using Clock = std::chrono::steady_clock;

// Tells the compiler the copy's bytes are used, so it cannot drop or merge memcpy calls.
inline void keep(void* destination) {
  __asm__ volatile("" : : "r"(destination) : "memory");
}

// One copy per chunk, chunk i of the source to chunk i of the destination; returns the chunks copied.
std::size_t copy_pass(std::vector<std::byte>& source, std::vector<std::byte>& destination,
                      std::size_t copy_size) {
  const std::size_t chunks = source.size() / copy_size;
  for (std::size_t i = 0; i < chunks; ++i) {
    std::memcpy(destination.data() + i * copy_size, source.data() + i * copy_size, copy_size);
    keep(destination.data());
  }
  return chunks;
}

}  // namespace

Result<double> measure_memcpy(const CopySpec& spec) {
  if (spec.copy_size == 0 || spec.set_bytes < spec.copy_size || spec.duration_s <= 0) {
    return make_error(fmt::format("bad memcpy spec: copy {} B over {} B for {} s", spec.copy_size,
                                  spec.set_bytes, spec.duration_s));
  }
  const std::size_t set = spec.set_bytes / spec.copy_size * spec.copy_size;
  std::vector<std::byte> source(set, std::byte{0xA5});  // written now: every page is mapped
  std::vector<std::byte> destination(set, std::byte{0});
  copy_pass(source, destination, spec.copy_size);  // warm-up, untimed

  const auto start = Clock::now();
  const auto stop = start + std::chrono::duration<double>(spec.duration_s);
  std::size_t copies = 0;
  auto now = start;
  while (now < stop) {
    copies += copy_pass(source, destination, spec.copy_size);
    now = Clock::now();
  }
  const double seconds = std::chrono::duration<double>(now - start).count();
  return static_cast<double>(copies) * static_cast<double>(spec.copy_size) / seconds;
}

}  // namespace ringhub::limits
