// loop_config: LoopOptions onto a uring::ClientLoopConfig; see loop_options.hpp.
#include "clients/cpp/loop_options.hpp"

#include <utility>

namespace ringhub::client {

uring::ClientLoopConfig loop_config(const LoopOptions& options, std::uint32_t conns,
                                    std::vector<uring::SocketAddress> hubs, std::int64_t connect_timeout_ns) {
  uring::ClientLoopConfig config;
  config.index = options.loop_index;
  config.conns = conns;
  config.buffer_count = options.recv_buffers;
  config.buffer_size = options.recv_buffer_size;
  config.buffer_residency = options.buffer_residency;
  config.hubs = std::move(hubs);
  config.sources = options.sources;
  config.connect_timeout_ns = connect_timeout_ns;
  uring::size_for_connections(config);
  config.table_size = options.table_size != 0 ? options.table_size : config.table_size;
  config.sq_entries = options.sq_entries != 0 ? options.sq_entries : config.sq_entries;
  config.cq_entries = options.cq_entries != 0 ? options.cq_entries : config.cq_entries;
  return config;
}

}  // namespace ringhub::client
