// memcpy bandwidth of fixed-size copies, cache-hot (one source and one destination, copied again and
// again) or from DRAM (rotating over sets far larger than any cache). Bytes/s count each byte copied
// once (not read plus write).
#pragma once

#include <cstddef>

#include "core/result.hpp"

namespace ringhub::limits {

struct CopySpec {
  std::size_t copy_size = 1U << 20;  // bytes per memcpy call
  std::size_t set_bytes = 1U << 20;  // source and destination each span this many bytes; == copy_size: hot
  double duration_s = 2.0;
};

Result<double> measure_memcpy(const CopySpec& spec);

}  // namespace ringhub::limits
