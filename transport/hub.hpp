// Hub: the running relay server. Owns one Shard (io_uring + connections) per shard index, driven by
// fewer or as many threads, starts them listening on one SO_REUSEPORT port, and stops them. Created
// and stopped from one control thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/result.hpp"
#include "core/stats.hpp"
#include "transport/hub_config.hpp"

namespace ringhub {

class Hub {
 public:
  // Probes the kernel, binds the listeners and starts every shard thread. Fails with a message a
  // user can act on (port taken, io_uring missing a feature, limits too low).
  static Result<std::unique_ptr<Hub>> start(const HubConfig& config);

  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;
  ~Hub();  // stops if still running

  std::uint16_t relay_port() const;
  std::uint16_t line_port() const;
  std::uint16_t admin_port() const;  // 0 when the admin plane is off
  std::string metrics_text() const;  // what GET /metrics serves
  unsigned shard_count() const;
  unsigned thread_count() const;  // threads driving the shards
  // --max-connections, or less when the shards' file tables hold less (logged at start).
  std::size_t max_connections() const;
  HubStats stats() const;  // sum of every shard's counters, readable from any thread

  // Stops accepting, flushes queued bytes for up to the shutdown grace, closes every connection and
  // joins the shard threads. Idempotent.
  void stop();
  // Takes the relay and line listeners out of LISTEN so a new hub can bind their ports at once, even
  // if this process exits before its rings are torn down (a forced exit). stop() leaves it to each
  // shard, which cancels its accepts first. Safe from any thread while the hub exists.
  void stop_listening() const;

 private:
  struct Impl;
  explicit Hub(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringhub
