// Fuzz target for core/client_frame_reader: a hub's byte stream fed whole and cut at fuzzer-chosen points
// must give the same events and the same error; the events, encoded again, are the stream's bytes; an
// error is the one validate_hub_header gives the next header; the limits hold; DELIVER bytes are views
// into the fed bytes (never copies).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/client_frame_reader.hpp"
#include "core/frame_codec.hpp"
#include "core/protocol.hpp"
#include "tests/fuzz/fuzz_input.hpp"

namespace ringhub::fuzz {
namespace {

using protocol::kHeaderSize;
using Bytes = std::vector<std::uint8_t>;

// The LIST_REPLY cap for modes 0..14 is mode x 8 bytes (tiny, so inputs reach it); mode 15 the default.
constexpr std::uint8_t kDefaultCapMode = 15;
std::size_t list_cap(std::uint8_t mode) {
  return mode == kDefaultCapMode ? kDefaultMaxListReplyLength : std::size_t{mode} * protocol::kIdSize;
}

// Each event re-encoded as the frame bytes it came from; an unfinished DELIVER is its bytes so far.
struct Recorder {
  std::size_t cap = 0;
  std::span<const std::uint8_t> piece;  // the bytes being fed: DELIVER runs must point into them
  std::vector<Bytes> frames;
  bool in_deliver = false;

  void on_identity_reply(protocol::UserId id) {
    require(!in_deliver, "no frame starts inside a DELIVER");
    frames.emplace_back();
    codec::append_identity_reply(frames.back(), id);
  }
  void on_list_reply(std::span<const protocol::UserId> ids) {
    require(!in_deliver, "no frame starts inside a DELIVER");
    require(ids.size() * protocol::kIdSize <= cap, "a LIST_REPLY is within the reader's cap");
    frames.emplace_back();
    codec::append_list_reply(frames.back(), ids);
  }
  void on_deliver_begin(protocol::UserId sender, std::uint32_t size) {
    require(!in_deliver, "no frame starts inside a DELIVER");
    require(size <= protocol::kMaxBodySize, "a DELIVER body is within 1 MiB");
    frames.emplace_back(protocol::kDeliverPrefixSize);
    codec::encode_deliver_prefix(std::span<std::uint8_t, protocol::kDeliverPrefixSize>(
                                     frames.back().data(), protocol::kDeliverPrefixSize),
                                 sender, size);
    in_deliver = true;
  }
  void on_deliver_bytes(std::span<const std::uint8_t> bytes) {
    require(in_deliver, "DELIVER bytes come between begin and end");
    require(!bytes.empty(), "no empty byte runs");
    require(bytes.data() >= piece.data() && bytes.data() + bytes.size() <= piece.data() + piece.size(),
            "DELIVER bytes are views into the fed bytes");
    frames.back().insert(frames.back().end(), bytes.begin(), bytes.end());
  }
  void on_deliver_end() {
    require(in_deliver, "a DELIVER ends after it began");
    const auto header =
        codec::decode_header(std::span<const std::uint8_t, kHeaderSize>(frames.back().data(), kHeaderSize));
    require(frames.back().size() == kHeaderSize + header.length, "a DELIVER ends after exactly its body");
    in_deliver = false;
  }
  void on_error(std::uint8_t code, std::string_view reason) {
    require(!in_deliver, "no frame starts inside a DELIVER");
    require(reason.size() <= protocol::kMaxErrorReasonSize, "an ERROR reason is within 200 bytes");
    frames.emplace_back();
    codec::append_error(frames.back(), static_cast<protocol::ErrorCode>(code), reason);
  }
};

struct Outcome {
  std::vector<Bytes> frames;
  std::optional<HubFrameError> error;
  bool at_boundary = true;
  bool in_deliver = false;  // the last frame is a DELIVER whose body is still coming
};

Outcome feed_whole(const FuzzInput& input) {
  ClientFrameReader reader(list_cap(input.mode));
  Recorder recorder{list_cap(input.mode), input.stream, {}, false};
  Outcome out;
  out.error = reader.feed(input.stream, recorder);
  out.frames = std::move(recorder.frames);
  out.at_boundary = reader.at_boundary();
  out.in_deliver = recorder.in_deliver;
  return out;
}

Outcome feed_split(const FuzzInput& input) {
  ClientFrameReader reader(list_cap(input.mode));
  Recorder recorder{list_cap(input.mode), {}, {}, false};
  Outcome out;
  for (const Bytes& piece : split_pieces(input)) {
    recorder.piece = piece;
    const std::size_t frames_before = recorder.frames.size();
    const std::optional<HubFrameError> error = reader.feed(piece, recorder);
    if (out.error) {
      require(error == out.error && recorder.frames.size() == frames_before, "an error is final");
    }
    out.error = error;
  }
  out.frames = std::move(recorder.frames);
  out.at_boundary = reader.at_boundary();
  out.in_deliver = recorder.in_deliver;
  return out;
}

// The re-encoded frames are the stream's first bytes; then either the error's header or one partial frame.
void check_against_stream(const Outcome& out, std::span<const std::uint8_t> stream, std::size_t cap) {
  const std::size_t pos = match_stream_prefix(out.frames, stream);
  const std::size_t rest = stream.size() - pos;
  if (out.error) {
    const auto header = header_at(stream, pos);
    require(validate_hub_header(header, cap) == out.error, "the error is validate_hub_header's");
    return;
  }
  if (out.in_deliver) {
    require(rest == 0 && !out.at_boundary, "an unfinished DELIVER has had every byte of the stream");
    return;
  }
  require(out.at_boundary == (rest == 0), "at a boundary exactly when no bytes are left over");
  if (rest >= kHeaderSize) {
    const auto header = header_at(stream, pos);
    require(!validate_hub_header(header, cap), "a held partial frame has a valid header");
    require(kHeaderSize + header.length > rest, "a held frame is incomplete");
  }
}

// Every invariant of this target on one input.
void check_reader(const FuzzInput& input) {
  const Outcome whole = feed_whole(input);
  const Outcome split = feed_split(input);
  check_against_stream(whole, input.stream, list_cap(input.mode));
  check_against_stream(split, input.stream, list_cap(input.mode));
  require(whole.frames == split.frames, "split feeding gives the events of whole feeding");
  require(whole.error == split.error, "split feeding gives the error of whole feeding");
  require(whole.at_boundary == split.at_boundary && whole.in_deliver == split.in_deliver,
          "split feeding ends at the same boundary");
}

}  // namespace
}  // namespace ringhub::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ringhub::fuzz::check_input(data, size, ringhub::fuzz::check_reader);
}
