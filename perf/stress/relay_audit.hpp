// The relay run's audit after the engines joined: which planned deliveries never arrived, and what each
// such receiver's connection saw (bytes in vs the bytes planned for it, how it ended, where its parser
// stopped), so a FAIL says where the bytes went instead of only how many are missing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perf/stress/relay_driver.hpp"

namespace ringhub::stress {

// Missing deliveries described at most this many times (the count is always exact).
inline constexpr std::size_t kMaxMissingSamples = 20;

struct RelayAudit {
  std::uint64_t missing = 0;             // planned (relay, receiver) pairs that never arrived
  std::uint64_t missing_unsent = 0;      // of those, relays their sender never wrote
  std::uint64_t hub_bytes_expected = 0;  // what the hub should write: every DELIVER and IDENTITY reply
  std::vector<std::string> samples;      // at most kMaxMissingSamples
};

// `drivers` are the engines' drivers in client order; `run_start_ns` dates the samples' times.
RelayAudit audit_relays(const std::vector<const RelayDriver*>& drivers, std::uint32_t clients,
                        std::int64_t run_start_ns);

}  // namespace ringhub::stress
