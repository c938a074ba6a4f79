// Tests for transport/listener: the SO_REUSEPORT group binds one port, refuses a taken one with the
// flag to change, and hands every accepted socket TCP keepalive (dead peers are found in minutes).
#include "transport/listener.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ringhub {
namespace {

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t size = sizeof value;
  EXPECT_EQ(getsockopt(fd, level, name, &value, &size), 0) << std::strerror(errno);
  return value;
}

// Connects a plain client to 127.0.0.1:port and returns the listener's accepted socket.
int accept_one(const ListenerSet& set, int* client) {
  *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(set.port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(*client, reinterpret_cast<const sockaddr*>(&to), sizeof to), 0) << std::strerror(errno);
  std::vector<pollfd> fds;  // reuseport picked one of them: wait for whichever it was
  for (const int fd : set.fds) {
    fds.push_back(pollfd{fd, POLLIN, 0});
  }
  if (poll(fds.data(), fds.size(), 10'000) <= 0) {
    return -1;
  }
  for (const pollfd& p : fds) {
    if ((p.revents & POLLIN) != 0) {
      return accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
    }
  }
  return -1;
}

TEST(ListenerTest, AcceptedSocketsInheritKeepalive) {
  Result<ListenerSet> set = open_listeners("127.0.0.1", 0, 1, "--relay-port",
                                           Keepalive{std::chrono::seconds(77), std::chrono::seconds(11), 5});
  ASSERT_TRUE(set.ok()) << set.error().message;
  int client = -1;
  const int accepted = accept_one(*set, &client);
  ASSERT_GE(accepted, 0);
  EXPECT_EQ(int_option(accepted, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(int_option(accepted, IPPROTO_TCP, TCP_KEEPIDLE), 77);
  EXPECT_EQ(int_option(accepted, IPPROTO_TCP, TCP_KEEPINTVL), 11);
  EXPECT_EQ(int_option(accepted, IPPROTO_TCP, TCP_KEEPCNT), 5);
  EXPECT_EQ(int_option(accepted, IPPROTO_TCP, TCP_NODELAY), 1);
  close(accepted);
  close(client);
  close_listeners(*set);
}

TEST(ListenerTest, KeepaliveOffLeavesItOff) {
  Result<ListenerSet> set = open_listeners("127.0.0.1", 0, 2, "--relay-port", Keepalive{});
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->fds.size(), 2U);
  int client = -1;
  const int accepted = accept_one(*set, &client);
  ASSERT_GE(accepted, 0);
  EXPECT_EQ(int_option(accepted, SOL_SOCKET, SO_KEEPALIVE), 0);
  close(accepted);
  close(client);
  close_listeners(*set);
}

TEST(ListenerTest, TakenPortIsRefusedNamingTheFlag) {
  Result<ListenerSet> first = open_listeners("127.0.0.1", 0, 1, "--relay-port");
  ASSERT_TRUE(first.ok()) << first.error().message;
  Result<ListenerSet> second = open_listeners("127.0.0.1", first->port, 1, "--line-port");
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("--line-port"), std::string::npos) << second.error().message;
  close_listeners(*first);
}

}  // namespace
}  // namespace ringhub
