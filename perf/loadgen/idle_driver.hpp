// IdleDriver: the connection-scale mode of ringhub-perf. Each engine opens its share of N connections,
// a bounded number at a time, and counts one as open only when the server has answered its greeting
// (so a connection parked in the kernel's accept queue does not count); then all stay idle until main
// has read the server's memory, and close.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "perf/loadgen/wire.hpp"
#include "transport/uring/client_loop.hpp"

namespace ringhub::perf {

// Shared by every engine's IdleDriver and main; each field says who writes it.
struct IdleShared {
  std::atomic<std::uint64_t> confirmed{0};       // drivers: greeting answered
  std::atomic<std::uint64_t> failed{0};          // drivers: connect refused, reset or closed by the server
  std::atomic<std::int64_t> last_confirm_ns{0};  // drivers: when the latest confirmation arrived
  std::atomic<bool> close_now{false};            // main: everyone closes
  std::mutex errors_mutex;
  std::vector<std::string> errors;  // the first few failures, for the report
};

// Contract: lives on its engine's thread.
class IdleDriver final : public uring::ClientDriver, public WireEvents {
 public:
  IdleDriver(uring::ClientLoop& engine, Target target, std::uint32_t max_connecting, IdleShared& shared);
  void start();

  void on_connected(uring::ClientConn& conn) override;
  void on_bytes(uring::ClientConn& conn, std::span<const std::uint8_t> bytes) override;
  void on_closed(uring::ClientConn& conn, const uring::CloseInfo& info) override;
  void on_timer(const uring::ClientTimer& timer) override { (void)timer; }
  void on_iteration() override;
  bool finished() const override { return closing_; }

  void on_ready(std::uint32_t conn, std::uint64_t id) override;
  void on_message_begin(std::uint32_t conn, std::uint64_t origin, std::size_t size) override;
  void on_message_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) override;
  void on_message_end(std::uint32_t conn) override { (void)conn; }
  void on_publish_ack(std::uint32_t conn, std::int64_t receivers) override;
  void on_reply(std::uint32_t conn, std::string_view bytes) override;
  void on_protocol_error(std::uint32_t conn, std::string_view what) override;

 private:
  void connect_more();
  void record_failure(std::string what);

  uring::ClientLoop& engine_;
  Target target_;
  std::uint32_t max_connecting_;
  IdleShared& shared_;
  std::vector<std::unique_ptr<StreamParser>> parsers_;
  std::vector<std::uint8_t> confirmed_;
  std::uint32_t next_ = 0;        // the next connection slot to open
  std::uint32_t connecting_ = 0;  // opened, not yet confirmed or failed
  bool closing_ = false;
};

}  // namespace ringhub::perf
