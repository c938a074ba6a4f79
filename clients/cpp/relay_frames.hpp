// What a blocking relay client makes of whole hub frames (client::Frame): their names, the hub's ERROR
// as an Error, DELIVER and LIST_REPLY payloads as values, and the Deadline every blocking wait keeps.
// Shared by RelayClient and the tests' plain-socket client.
#pragma once

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "clients/cpp/relay_client.hpp"
#include "core/result.hpp"

namespace ringhub::client::detail {

// When a wait must end, and the timeout it came from, which the error message repeats.
class Deadline {
  using Clock = std::chrono::steady_clock;
  using Ms = std::chrono::milliseconds;

 public:
  explicit Deadline(std::chrono::milliseconds timeout)
      : timeout_(std::min(timeout, kLongest)), end_(Clock::now() + std::max(timeout_, Ms{0})) {}

  bool unlimited() const { return timeout_ < Ms{0}; }
  // What is left, at least 0; negative (no limit) when unlimited. Rounded up so a wait never wakes just
  // short of the deadline and spins through zero-length waits.
  Ms left() const {
    if (unlimited()) {
      return Ms{-1};
    }
    return std::max(std::chrono::ceil<Ms>(end_ - Clock::now()), Ms{0});
  }
  int poll_ms() const { return static_cast<int>(left().count()); }

  Error expired(std::string_view awaited) const;

 private:
  // poll() takes an int; anything longer is as good as forever for a blocking client.
  static constexpr Ms kLongest{std::numeric_limits<int>::max()};

  Ms timeout_;
  Clock::time_point end_;
};

std::string frame_type_name(protocol::FrameType type);
// EPROTO: the hub sent `frame` while the client waited for `awaited`.
Error unexpected(const Frame& frame, std::string_view awaited);
// The hub's ERROR frame as an Error in the protocol domain: "hub closed the connection: error N (name):
// reason".
Error hub_error(const Frame& frame);
Delivery parse_delivery(const Frame& frame);
std::vector<protocol::UserId> parse_ids(const Frame& frame);

}  // namespace ringhub::client::detail
