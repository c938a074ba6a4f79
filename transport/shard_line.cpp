// Shard: the line protocol's seam. What `message X` and `ok X` mean lives in core/line_service; here
// the shard splits a connection's bytes into lines, writes the service's lines to sockets, and carries
// its messages between shards.
#include <spdlog/spdlog.h>

#include "transport/shard.hpp"

namespace ringhub {

LineServiceConfig Shard::line_service_config(const HubShared& shared, unsigned index) {
  return LineServiceConfig{
      .shard_index = index,
      .shard_count = shared.shard_count,
      .reforward = shared.config.line_reforward,
      .max_pending_bytes = shared.config.max_line_pending_bytes,
  };
}

void Shard::on_line_bytes(Connection& conn, const BlockRef& buffer, std::uint32_t length) {
  const LineStatus status =
      conn.lines->feed(std::span<const std::uint8_t>(buffer.data(), length), [&](std::string_view line) {
        counters_.frames_in.add(1);
        ++conn.frames_in;
        line_.on_line(conn, line);
        return conn.state == ConnState::kOpen;  // an error reply may have made it a slow consumer
      });
  if (status == LineStatus::kTooLong) {
    counters_.line_protocol_errors.add(1);
    lifecycle_.begin_drain(conn, DrainDeadline::kLinger, kLineTooLongLine);
  } else if (conn.state == ConnState::kOpen) {
    clocks_.clock_partial_frame(conn, now_);  // a line without its "\n" yet: the frame timeout applies
  }
}

void Shard::LineSeamOnShard::write(LinePeer& peer, std::string_view text) {
  shard_.lifecycle_.send_text(static_cast<Connection&>(peer), text);
}

void Shard::LineSeamOnShard::resume_reading(LinePeer& peer) {
  auto& conn = static_cast<Connection&>(peer);
  shard_.gate_.end_line_throttle(conn);
  shard_.read_.resume_reading(conn);
}

void Shard::LineSeamOnShard::post(unsigned target, LineMessage* message) {
  shard_.mailbox_.post(target, message);
}

std::uint32_t Shard::LineSeamOnShard::line_count(unsigned shard) const {
  return shard_.shared_.line_counts[shard].load(std::memory_order_relaxed);
}

void Shard::LineSeamOnShard::publish_line_count(std::uint32_t count) {
  shard_.shared_.line_counts[shard_.index_].store(count, std::memory_order_relaxed);
}

}  // namespace ringhub
