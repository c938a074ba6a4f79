// uring::ClientLoop on a real ring, against plain sockets of the test's own: what a connect's own
// timeout does when the listener never answers.
#include "transport/uring/client_loop.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>

namespace ringhub::uring {
namespace {

using namespace std::chrono_literals;

std::int64_t ns(std::chrono::nanoseconds d) {
  return d.count();
}

// Records how each connection ended.
struct Recorder final : ClientDriver {
  std::optional<CloseInfo> closed;
  void on_connected(ClientConn& /*conn*/) override {}
  void on_bytes(ClientConn& /*conn*/, std::span<const std::uint8_t> /*bytes*/) override {}
  void on_closed(ClientConn& /*conn*/, const CloseInfo& info) override { closed = info; }
  void on_timer(const ClientTimer& /*timer*/) override {}
  bool finished() const override { return false; }
};

// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it neither
// succeeds nor fails until its timeout.
class SilentListener {
 public:
  SilentListener() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    address_.sin_family = AF_INET;
    address_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address_;
    filler_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ok_ = listener_ >= 0 && filler_ >= 0 &&
          ::bind(listener_, reinterpret_cast<sockaddr*>(&address_), sizeof address_) == 0 &&
          ::listen(listener_, 0) == 0 &&
          ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address_), &length) == 0 &&
          ::connect(filler_, reinterpret_cast<sockaddr*>(&address_), sizeof address_) == 0;
  }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  ~SilentListener() {
    ::close(filler_);
    ::close(listener_);
  }
  bool ok() const { return ok_; }
  const sockaddr_in& address() const { return address_; }

 private:
  int listener_ = -1;
  int filler_ = -1;
  sockaddr_in address_{};
  bool ok_ = false;
};

// The timeout given to connect() bounds that connect, not the loop's configured one: a client trying a
// name's addresses gives the later ones what its attempt has left. The config's minute would fail the
// test's wait; the 200 ms asked for ends it with ETIMEDOUT.
TEST(ClientLoopConnect, ATimeoutGivenToConnectReplacesTheConfiguredOne) {
  SilentListener silent;
  ASSERT_TRUE(silent.ok()) << "cannot set up a listener with a full accept queue";
  ClientLoopConfig config;
  config.conns = 1;
  config.table_size = 4;
  config.buffer_count = 4;
  config.buffer_size = 4096;
  config.hubs = {SocketAddress(silent.address())};
  config.connect_timeout_ns = ns(60s);
  config.sq_entries = 16;
  config.cq_entries = 32;
  ClientLoop loop(config);
  if (Result<void> ready = loop.init(); !ready) {
    GTEST_SKIP() << ready.error().message;
  }
  Recorder recorder;
  loop.set_driver(&recorder);
  loop.connect(loop.conn(0), 0, ns(200ms));
  ASSERT_TRUE(loop.run_until(now_ns() + ns(20s), [&] { return recorder.closed.has_value(); }))
      << "the connect outlived the timeout it was given";
  EXPECT_FALSE(recorder.closed->was_open);
  EXPECT_EQ(recorder.closed->error, ETIMEDOUT);
}

}  // namespace
}  // namespace ringhub::uring
