// RelayAudit: planned deliveries against what each receiver recorded; see relay_audit.hpp.
#include "perf/stress/relay_audit.hpp"

#include <fmt/format.h>

#include <cstring>

#include "core/protocol.hpp"

namespace ringhub::stress {

namespace {

struct Owner {
  const RelayDriver* driver = nullptr;
  std::uint32_t local = 0;
};

Owner owner_of(const std::vector<const RelayDriver*>& drivers, std::uint32_t client) {
  for (const RelayDriver* driver : drivers) {
    if (client >= driver->first_client() && client - driver->first_client() < driver->size()) {
      return {driver, client - driver->first_client()};
    }
  }
  return {};
}

std::string how_it_ended(const RelayDriver::ReceiverView& view) {
  const uring::CloseInfo& closed = view.closed;
  if (view.open_at_end) {
    return "still open when its engine stopped";
  }
  if (!closed.was_open) {
    return "never connected";
  }
  if (closed.requested) {
    return "closed by the harness";
  }
  if (closed.eof) {
    return "EOF from the hub";
  }
  return closed.error != 0 ? std::string(std::strerror(closed.error)) : std::string("closed");
}

std::string where_parser_stopped(const RelayDriver::ReceiverView& view) {
  if (!view.mid_frame) {
    return "at a frame boundary";
  }
  if (view.frame_type == static_cast<std::uint8_t>(protocol::FrameType::kDeliver) && view.frame_seq != 0) {
    return fmt::format("inside a DELIVER from client {} seq {}, {} bytes to come", view.frame_sender,
                       view.frame_seq, view.frame_remaining);
  }
  return fmt::format("inside a frame of type {:#x}, {} bytes to come", view.frame_type, view.frame_remaining);
}

std::string describe(std::uint32_t sender, std::uint32_t seq, std::uint32_t size, bool sent,
                     std::uint32_t receiver, const RelayDriver::ReceiverView& view,
                     std::uint64_t bytes_planned, std::uint32_t deliveries_planned,
                     std::int64_t run_start_ns) {
  const double last_bytes_s =
      view.last_bytes_ns == 0 ? 0 : static_cast<double>(view.last_bytes_ns - run_start_ns) / 1e9;
  return fmt::format(
      "missing: client {} seq {} ({} B{}) -> client {} (id {}): {} of {} bytes in, {} of {} DELIVERs, last "
      "bytes at {:.1f} s, ended: {}, ERROR frames {}{}, parser {}",
      sender, seq, size, sent ? "" : ", never written", receiver, view.hub_id, view.bytes_in, bytes_planned,
      view.verified, deliveries_planned, last_bytes_s, how_it_ended(view), view.error_frames,
      view.error_frames != 0 ? fmt::format(" (last code {})", view.last_error) : std::string(),
      where_parser_stopped(view));
}

}  // namespace

RelayAudit audit_relays(const std::vector<const RelayDriver*>& drivers, std::uint32_t clients,
                        std::int64_t run_start_ns) {
  RelayAudit audit;
  // Per receiver: the bytes and DELIVERs planned for it (an IDENTITY reply included in the bytes).
  std::vector<std::uint64_t> bytes_planned(clients, protocol::kHeaderSize + protocol::kIdSize);
  std::vector<std::uint32_t> deliveries_planned(clients, 0);
  for (const RelayDriver* driver : drivers) {
    driver->for_each_planned([&](std::uint32_t, std::uint32_t, std::uint32_t size,
                                 const std::vector<std::uint32_t>& receivers, bool) {
      for (const std::uint32_t receiver : receivers) {
        bytes_planned[receiver] += protocol::kDeliverPrefixSize + size;
        ++deliveries_planned[receiver];
      }
    });
  }
  for (const RelayDriver* driver : drivers) {
    for (std::uint32_t local = 0; local < driver->size(); ++local) {
      if (driver->receiver(local).hub_id != 0) {
        audit.hub_bytes_expected += bytes_planned[driver->first_client() + local];
      }
    }
  }
  for (const RelayDriver* driver : drivers) {
    driver->for_each_planned([&](std::uint32_t sender, std::uint32_t seq, std::uint32_t size,
                                 const std::vector<std::uint32_t>& receivers, bool sent) {
      for (const std::uint32_t receiver : receivers) {
        const Owner owner = owner_of(drivers, receiver);
        if (owner.driver == nullptr || owner.driver->received(owner.local, sender, seq)) {
          continue;
        }
        ++audit.missing;
        audit.missing_unsent += sent ? 0 : 1;
        if (audit.samples.size() < kMaxMissingSamples) {
          audit.samples.push_back(describe(sender, seq, size, sent, receiver,
                                           owner.driver->receiver(owner.local), bytes_planned[receiver],
                                           deliveries_planned[receiver], run_start_ns));
        }
      }
    });
  }
  return audit;
}

}  // namespace ringhub::stress
