// Greetings, publish framing and the streaming parsers of ringhub's relay protocol, the NATS text
// protocol and Redis RESP pub/sub. Parsers never copy message bodies: they hand out spans of the
// receive buffer, so a 1 MiB delivery costs the load generator no more than its checks.
#include "perf/loadgen/wire.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/client_frame_reader.hpp"
#include "core/frame_codec.hpp"
#include "core/protocol.hpp"

namespace ringhub::perf {

namespace {

// A control line longer than this is a protocol error (NATS INFO is the longest, about 600 bytes).
constexpr std::size_t kMaxLine = std::size_t{64} * 1024;
constexpr std::string_view kChannelPrefix = "rhp";

std::int64_t parse_int(std::string_view text) {
  std::int64_t value = -1;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

// "rhp12" -> 12; anything else -> UINT64_MAX, which matches no publisher.
std::uint64_t publisher_of(std::string_view channel) {
  if (!channel.starts_with(kChannelPrefix)) {
    return UINT64_MAX;
  }
  const std::int64_t index = parse_int(channel.substr(kChannelPrefix.size()));
  return index < 0 ? UINT64_MAX : static_cast<std::uint64_t>(index);
}

// Reads decimal digits at p (advancing it); false when there are none, more than kMaxDigits (no
// overflow: the slow path then reports the line) or the bytes end inside them.
bool read_decimal(const std::uint8_t*& p, const std::uint8_t* end, std::uint64_t& value) {
  constexpr std::ptrdiff_t kMaxDigits = 18;
  value = 0;
  const std::uint8_t* start = p;
  while (p < end && *p >= '0' && *p <= '9') {
    if (p - start == kMaxDigits) {
      return false;
    }
    value = value * 10 + (*p - '0');
    ++p;
  }
  return p > start && p < end;
}

bool read_literal(const std::uint8_t*& p, const std::uint8_t* end, std::string_view literal) {
  if (static_cast<std::size_t>(end - p) < literal.size() ||
      std::memcmp(p, literal.data(), literal.size()) != 0) {
    return false;
  }
  p += literal.size();
  return true;
}

// A message delivery found whole in one receive buffer: the fast path of the NATS and Redis parsers.
struct WholeMessage {
  std::uint64_t origin = UINT64_MAX;
  std::span<const std::uint8_t> payload;
  std::size_t consumed = 0;  // framing included
};

void append_text(std::vector<std::uint8_t>& out, std::string_view text) {
  out.insert(out.end(), text.begin(), text.end());
}

// Hands the next `remaining` payload bytes (or as many as there are) to `events`; true once the
// payload is complete and on_message_end has been reported.
bool stream_payload(std::span<const std::uint8_t>& bytes, std::size_t& remaining, std::uint32_t conn,
                    WireEvents& events) {
  const std::size_t n = std::min(remaining, bytes.size());
  events.on_message_bytes(conn, bytes.first(n));
  bytes = bytes.subspan(n);
  remaining -= n;
  if (remaining != 0) {
    return false;
  }
  events.on_message_end(conn);
  return true;
}

// Collects CRLF-terminated lines that may straddle receive buffers; a line wholly inside one buffer is
// returned in place, without a copy.
class LineReader {
 public:
  // Consumes bytes up to and including the next '\n'. Returns true and the line (without CR LF) when
  // one is complete; false when the bytes ran out first (they are kept).
  bool next(std::span<const std::uint8_t>& bytes, std::string_view& line, bool& too_long) {
    const auto* begin = reinterpret_cast<const char*>(bytes.data());
    const void* nl = std::memchr(begin, '\n', bytes.size());
    if (nl == nullptr) {
      partial_.append(begin, bytes.size());
      too_long = partial_.size() > kMaxLine;
      bytes = {};
      return false;
    }
    const auto used = static_cast<std::size_t>(static_cast<const char*>(nl) - begin) + 1;
    bytes = bytes.subspan(used);
    if (partial_.empty()) {
      line = std::string_view(begin, used - 1);
    } else {
      partial_.append(begin, used - 1);
      held_.swap(partial_);
      partial_.clear();
      line = held_;
    }
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    return true;
  }

  bool empty() const { return partial_.empty(); }

 private:
  std::string partial_;
  std::string held_;  // the last straddling line, alive until the next call
};

// ringhub: core/client_frame_reader does the reading; this turns its frames into the benchmark's events.
class RinghubParser final : public StreamParser {
 public:
  explicit RinghubParser(std::uint32_t conn) : conn_(conn) {}

  void feed(std::span<const std::uint8_t> bytes, WireEvents& events) override {
    if (reader_.error()) {
      return;  // reported once; the stream cannot be read past a malformed header
    }
    ToEvents to_events{conn_, events};
    if (const auto error = reader_.feed(bytes, to_events)) {
      events.on_protocol_error(conn_,
                               fmt::format("malformed ringhub frame: {}", hub_frame_error_name(*error)));
    }
  }

 private:
  struct ToEvents {
    std::uint32_t conn;
    WireEvents& events;

    void on_identity_reply(protocol::UserId id) { events.on_ready(conn, id); }
    void on_list_reply(std::span<const protocol::UserId> /*ids*/) {}  // not used here
    void on_deliver_begin(protocol::UserId sender, std::uint32_t size) {
      events.on_message_begin(conn, sender, size);
    }
    void on_deliver_bytes(std::span<const std::uint8_t> bytes) { events.on_message_bytes(conn, bytes); }
    void on_deliver_end() { events.on_message_end(conn); }
    void on_error(std::uint8_t code, std::string_view reason) {
      events.on_protocol_error(
          conn, fmt::format("ringhub ERROR {} ({}): {}", code,
                            protocol::error_code_name(static_cast<protocol::ErrorCode>(code)), reason));
    }
  };

  std::uint32_t conn_;
  ClientFrameReader reader_;
};

// NATS: INFO/MSG/PING/PONG/+OK/-ERR lines; a MSG line is followed by its payload and CR LF.
class NatsParser final : public StreamParser {
 public:
  explicit NatsParser(std::uint32_t conn) : conn_(conn) {}

  void feed(std::span<const std::uint8_t> bytes, WireEvents& events) override {
    while (!bytes.empty()) {
      WholeMessage whole;
      if (remaining_ == 0 && crlf_left_ == 0 && lines_.empty() && whole_msg(bytes, whole)) {
        events.on_message_begin(conn_, whole.origin, whole.payload.size());
        events.on_message_bytes(conn_, whole.payload);
        events.on_message_end(conn_);
        bytes = bytes.subspan(whole.consumed);
      } else if (remaining_ > 0) {
        take_payload(bytes, events);
      } else if (crlf_left_ > 0) {
        const std::size_t n = std::min<std::size_t>(crlf_left_, bytes.size());
        crlf_left_ -= n;
        bytes = bytes.subspan(n);
      } else {
        take_line(bytes, events);
      }
    }
  }

 private:
  // "MSG rhp<p> <sid> <size>\r\n<payload>\r\n" wholly in `bytes`; anything else takes the slow path.
  static bool whole_msg(std::span<const std::uint8_t> bytes, WholeMessage& whole) {
    const std::uint8_t* p = bytes.data();
    const std::uint8_t* end = p + bytes.size();
    std::uint64_t sid = 0;
    std::uint64_t size = 0;
    if (!read_literal(p, end, "MSG rhp") || !read_decimal(p, end, whole.origin) ||
        !read_literal(p, end, " ") || !read_decimal(p, end, sid) || !read_literal(p, end, " ") ||
        !read_decimal(p, end, size) || !read_literal(p, end, "\r\n") ||
        static_cast<std::uint64_t>(end - p) < size || static_cast<std::uint64_t>(end - p) - size < 2) {
      return false;
    }
    whole.payload = {p, static_cast<std::size_t>(size)};
    whole.consumed = static_cast<std::size_t>(p - bytes.data()) + size + 2;
    return true;
  }

  void take_payload(std::span<const std::uint8_t>& bytes, WireEvents& events) {
    if (stream_payload(bytes, remaining_, conn_, events)) {
      crlf_left_ = 2;
    }
  }

  void take_line(std::span<const std::uint8_t>& bytes, WireEvents& events) {
    std::string_view line;
    bool too_long = false;
    if (!lines_.next(bytes, line, too_long)) {
      if (too_long) {
        events.on_protocol_error(conn_, "NATS control line too long");
      }
      return;
    }
    if (line.starts_with("MSG ")) {
      on_msg(line, events);
    } else if (line == "PING") {
      events.on_reply(conn_, "PONG\r\n");
    } else if (line == "PONG") {
      events.on_ready(conn_, 0);
    } else if (line.starts_with("-ERR")) {
      events.on_protocol_error(conn_, line);
    }
  }

  // MSG <subject> <sid> [reply-to] <#bytes>
  void on_msg(std::string_view line, WireEvents& events) {
    line.remove_prefix(4);
    const std::string_view subject = line.substr(0, line.find(' '));
    const std::size_t last_space = line.rfind(' ');
    const std::int64_t size = parse_int(line.substr(last_space + 1));
    if (last_space == std::string_view::npos || size < 0) {
      events.on_protocol_error(conn_, "malformed NATS MSG line");
      return;
    }
    events.on_message_begin(conn_, publisher_of(subject), static_cast<std::size_t>(size));
    remaining_ = static_cast<std::size_t>(size);
    if (remaining_ == 0) {
      events.on_message_end(conn_);
      crlf_left_ = 2;
    }
  }

  std::uint32_t conn_;
  LineReader lines_;
  std::size_t remaining_ = 0;
  std::size_t crlf_left_ = 0;
};

// Redis RESP2 pub/sub: pushes are arrays ["message", channel, payload] and ["subscribe", channel, count];
// PUBLISH answers ":n"; PING answers "+PONG". Only the payload is streamed; other bulks are small.
class RedisParser final : public StreamParser {
 public:
  explicit RedisParser(std::uint32_t conn) : conn_(conn) {}

  void feed(std::span<const std::uint8_t> bytes, WireEvents& events) override {
    while (!bytes.empty()) {
      WholeMessage whole;
      if (state_ == State::kLine && array_left_ == 0 && lines_.empty() && whole_push(bytes, whole)) {
        events.on_message_begin(conn_, whole.origin, whole.payload.size());
        events.on_message_bytes(conn_, whole.payload);
        events.on_message_end(conn_);
        bytes = bytes.subspan(whole.consumed);
        continue;
      }
      switch (state_) {
        case State::kLine: take_line(bytes, events); break;
        case State::kBulk: take_bulk(bytes); break;
        case State::kPayload: take_payload(bytes, events); break;
        case State::kCrlf: take_crlf(bytes); break;
      }
    }
  }

 private:
  enum class State : std::uint8_t { kLine, kBulk, kPayload, kCrlf };
  enum class Kind : std::uint8_t { kNone, kMessage, kSubscribe, kOther };

  // "*3\r\n$7\r\nmessage\r\n$<n>\r\nrhp<p>\r\n$<size>\r\n<payload>\r\n" wholly in `bytes`.
  static bool whole_push(std::span<const std::uint8_t> bytes, WholeMessage& whole) {
    const std::uint8_t* p = bytes.data();
    const std::uint8_t* end = p + bytes.size();
    std::uint64_t channel_length = 0;
    std::uint64_t size = 0;
    if (!read_literal(p, end, "*3\r\n$7\r\nmessage\r\n$") || !read_decimal(p, end, channel_length) ||
        !read_literal(p, end, "\r\nrhp") || !read_decimal(p, end, whole.origin) ||
        !read_literal(p, end, "\r\n$") || !read_decimal(p, end, size) || !read_literal(p, end, "\r\n") ||
        static_cast<std::uint64_t>(end - p) < size || static_cast<std::uint64_t>(end - p) - size < 2) {
      return false;
    }
    whole.payload = {p, static_cast<std::size_t>(size)};
    whole.consumed = static_cast<std::size_t>(p - bytes.data()) + size + 2;
    return true;
  }

  void take_line(std::span<const std::uint8_t>& bytes, WireEvents& events) {
    std::string_view line;
    bool too_long = false;
    if (!lines_.next(bytes, line, too_long)) {
      if (too_long) {
        events.on_protocol_error(conn_, "Redis reply line too long");
      }
      return;
    }
    if (line.empty()) {
      events.on_protocol_error(conn_, "empty Redis reply line");
      return;
    }
    const std::int64_t number = parse_int(line.substr(1));
    switch (line.front()) {
      case '*': start_array(number); return;
      case '$': start_bulk(number, events); return;
      case ':': on_integer(number, events); return;
      case '+': events.on_ready(conn_, 0); return;  // +PONG
      case '-': events.on_protocol_error(conn_, line); return;
      default: events.on_protocol_error(conn_, "unexpected Redis reply"); return;
    }
  }

  void start_array(std::int64_t length) {
    array_left_ = length > 0 ? static_cast<std::size_t>(length) : 0;
    element_ = 0;
    kind_ = Kind::kNone;
  }

  void start_bulk(std::int64_t length, WireEvents& events) {
    if (length < 0) {
      element_done();  // a null bulk
      return;
    }
    remaining_ = static_cast<std::size_t>(length);
    if (kind_ == Kind::kMessage && element_ == 2) {
      events.on_message_begin(conn_, origin_, remaining_);
      state_ = State::kPayload;
      if (remaining_ == 0) {
        events.on_message_end(conn_);
        state_ = State::kCrlf;
      }
      return;
    }
    bulk_.clear();
    state_ = remaining_ == 0 ? State::kCrlf : State::kBulk;
    if (remaining_ == 0) {
      bulk_done();
    }
  }

  void on_integer(std::int64_t value, WireEvents& events) {
    if (array_left_ == 0) {
      events.on_publish_ack(conn_, value);
      return;
    }
    if (kind_ == Kind::kSubscribe && element_ == 2) {
      events.on_ready(conn_, static_cast<std::uint64_t>(value));
    }
    element_done();
  }

  void take_bulk(std::span<const std::uint8_t>& bytes) {
    const std::size_t n = std::min(remaining_, bytes.size());
    if (bulk_.size() < 64) {
      bulk_.append(reinterpret_cast<const char*>(bytes.data()), std::min<std::size_t>(n, 64 - bulk_.size()));
    }
    bytes = bytes.subspan(n);
    remaining_ -= n;
    if (remaining_ == 0) {
      bulk_done();
      state_ = State::kCrlf;
    }
  }

  void bulk_done() {
    if (element_ == 0) {
      kind_ = bulk_ == "message" ? Kind::kMessage : bulk_ == "subscribe" ? Kind::kSubscribe : Kind::kOther;
    } else if (element_ == 1) {
      origin_ = publisher_of(bulk_);
    }
  }

  void take_payload(std::span<const std::uint8_t>& bytes, WireEvents& events) {
    if (stream_payload(bytes, remaining_, conn_, events)) {
      state_ = State::kCrlf;
    }
  }

  // Every bulk string ends in CR LF; after it the array moves to its next element.
  void take_crlf(std::span<const std::uint8_t>& bytes) {
    const std::size_t n = std::min<std::size_t>(2 - crlf_seen_, bytes.size());
    crlf_seen_ += n;
    bytes = bytes.subspan(n);
    if (crlf_seen_ == 2) {
      crlf_seen_ = 0;
      state_ = State::kLine;
      element_done();
    }
  }

  void element_done() {
    if (array_left_ > 0 && ++element_ == array_left_) {
      array_left_ = 0;
      element_ = 0;
      kind_ = Kind::kNone;
    }
  }

  std::uint32_t conn_;
  LineReader lines_;
  State state_ = State::kLine;
  Kind kind_ = Kind::kNone;
  std::size_t array_left_ = 0;  // elements in the array being read (0: not in one)
  std::size_t element_ = 0;
  std::size_t remaining_ = 0;
  std::size_t crlf_seen_ = 0;
  std::string bulk_;
  std::uint64_t origin_ = UINT64_MAX;
};

void append_resp_command(std::vector<std::uint8_t>& out, std::span<const std::string> words) {
  append_text(out, fmt::format("*{}\r\n", words.size()));
  for (const std::string& word : words) {
    append_text(out, fmt::format("${}\r\n{}\r\n", word.size(), word));
  }
}

}  // namespace

std::string_view target_name(Target target) {
  switch (target) {
    case Target::kRinghub: return "ringhub";
    case Target::kNats: return "nats";
    case Target::kRedis: return "redis";
  }
  return "?";
}

std::string channel_name(unsigned publisher) {
  return fmt::format("{}{}", kChannelPrefix, publisher);
}

std::unique_ptr<StreamParser> make_parser(Target target, std::uint32_t conn) {
  switch (target) {
    case Target::kRinghub: return std::make_unique<RinghubParser>(conn);
    case Target::kNats: return std::make_unique<NatsParser>(conn);
    case Target::kRedis: return std::make_unique<RedisParser>(conn);
  }
  return nullptr;
}

void append_greeting(Target target, Role role, unsigned publishers, std::vector<std::uint8_t>& out) {
  if (target == Target::kRinghub) {
    codec::append_identity_request(out);
    return;
  }
  if (target == Target::kNats) {
    // echo:false would hide a publisher's own messages; it never subscribes, so the default is kept.
    append_text(out, "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
    for (unsigned p = 0; role == Role::kReceiver && p < publishers; ++p) {
      append_text(out, fmt::format("SUB {} {}\r\n", channel_name(p), p + 1));
    }
    append_text(out, "PING\r\n");  // its PONG says every SUB before it is in place
    return;
  }
  std::vector<std::string> words;
  if (role == Role::kReceiver) {
    words.emplace_back("SUBSCRIBE");
    for (unsigned p = 0; p < publishers; ++p) {
      words.push_back(channel_name(p));
    }
  } else {
    words.emplace_back("PING");
  }
  append_resp_command(out, words);
}

PublishFraming publish_framing(Target target, unsigned publisher, std::span<const std::uint64_t> receivers,
                               std::size_t size) {
  PublishFraming framing;
  switch (target) {
    case Target::kRinghub: {
      codec::append_relay(framing.prefix, receivers, {});
      // append_relay wrote the length of an empty body; the real body follows each prefix.
      const auto length = static_cast<std::uint32_t>(protocol::kIdSize * receivers.size() + size);
      codec::store_u32(framing.prefix.data() + 4, length);
      break;
    }
    case Target::kNats:
      append_text(framing.prefix, fmt::format("PUB {} {}\r\n", channel_name(publisher), size));
      framing.suffix = "\r\n";
      break;
    case Target::kRedis: {
      const std::string channel = channel_name(publisher);
      append_text(framing.prefix,
                  fmt::format("*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n${}\r\n", channel.size(), channel, size));
      framing.suffix = "\r\n";
      break;
    }
  }
  return framing;
}

}  // namespace ringhub::perf
