// The three wire protocols ringhub-perf speaks, reduced to what a pub/sub benchmark needs: the greeting
// each connection sends, the framing around a published message, and a streaming parser per connection
// that turns received bytes into events (ready, message begin/bytes/end, acks, errors).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringhub::perf {

enum class Target : std::uint8_t { kRinghub, kNats, kRedis };
enum class Role : std::uint8_t { kReceiver, kPublisher, kIdle };

std::string_view target_name(Target target);

// What a parser reports; `conn` is the connection index the parser was made for.
class WireEvents {
 public:
  virtual ~WireEvents() = default;
  // The greeting was answered: the connection can publish or is subscribed. `id`: ringhub's user id.
  virtual void on_ready(std::uint32_t conn, std::uint64_t id) = 0;
  // A delivered message starts. `origin`: ringhub's sender id; the publisher index for NATS and Redis.
  virtual void on_message_begin(std::uint32_t conn, std::uint64_t origin, std::size_t size) = 0;
  virtual void on_message_bytes(std::uint32_t conn, std::span<const std::uint8_t> bytes) = 0;
  virtual void on_message_end(std::uint32_t conn) = 0;
  // Redis answers each PUBLISH with the number of subscribers that got it.
  virtual void on_publish_ack(std::uint32_t conn, std::int64_t receivers) = 0;
  // Bytes the protocol obliges the client to send back (NATS PONG to a server PING).
  virtual void on_reply(std::uint32_t conn, std::string_view bytes) = 0;
  virtual void on_protocol_error(std::uint32_t conn, std::string_view what) = 0;
};

class StreamParser {
 public:
  virtual ~StreamParser() = default;
  virtual void feed(std::span<const std::uint8_t> bytes, WireEvents& events) = 0;
};

std::unique_ptr<StreamParser> make_parser(Target target, std::uint32_t conn);

// The greeting: ringhub IDENTITY; NATS CONNECT (+ SUBs) + PING; Redis SUBSCRIBE, or PING.
void append_greeting(Target target, Role role, unsigned publishers, std::vector<std::uint8_t>& out);

// The bytes around one published message of `size` bytes; fixed for a publisher, so built once.
// ringhub: a RELAY header and the receiver ids; NATS: PUB line; Redis: a PUBLISH command's RESP.
struct PublishFraming {
  std::vector<std::uint8_t> prefix;
  std::string_view suffix;
};
PublishFraming publish_framing(Target target, unsigned publisher, std::span<const std::uint64_t> receivers,
                               std::size_t size);

// The subject (NATS) or channel (Redis) of publisher p.
std::string channel_name(unsigned publisher);

}  // namespace ringhub::perf
