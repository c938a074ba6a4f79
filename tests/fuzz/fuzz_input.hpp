// The input layout every ringhub fuzz target shares: a few leading bytes choose where the stream is cut
// (so one input is fed both whole and split at fuzzer-chosen points) and a mode; the rest is the stream.
// The seed corpora (tests/fuzz/make_corpus.py) write the same layout.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <vector>

#include "core/frame_codec.hpp"
#include "core/protocol.hpp"

namespace ringhub::fuzz {

// Byte 0: low nibble = number of cuts (0..15), high nibble = a mode the target interprets.
// Then 2 bytes per cut (u16 little-endian, taken modulo stream size + 1). The rest is the stream.
inline constexpr std::size_t kCutBytes = 2;
inline constexpr std::uint8_t kCutCountMask = 0x0F;
inline constexpr unsigned kModeShift = 4;

struct FuzzInput {
  std::uint8_t mode = 0;                 // 0..15, the target's meaning
  std::span<const std::uint8_t> stream;  // the bytes under test
  std::vector<std::size_t> cuts;         // sorted, each in [0, stream.size()]; repeats give empty pieces
};

// Nothing when the input is too short to hold its own cut table.
inline std::optional<FuzzInput> parse_fuzz_input(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return std::nullopt;
  }
  const std::size_t cut_count = data[0] & kCutCountMask;
  const std::size_t prefix = 1 + kCutBytes * cut_count;
  if (size < prefix) {
    return std::nullopt;
  }
  FuzzInput input;
  input.mode = static_cast<std::uint8_t>(data[0] >> kModeShift);
  input.stream = std::span<const std::uint8_t>(data + prefix, size - prefix);
  for (std::size_t i = 0; i < cut_count; ++i) {
    const std::size_t raw = data[1 + kCutBytes * i] | (std::size_t{data[2 + kCutBytes * i]} << 8);
    input.cuts.push_back(raw % (input.stream.size() + 1));
  }
  std::sort(input.cuts.begin(), input.cuts.end());
  return input;
}

// The stream cut at `cuts`: each piece copied into an allocation of exactly its size, so ASan reports
// any read past a piece (a parser that peeks beyond the bytes it was given).
inline std::vector<std::vector<std::uint8_t>> split_pieces(const FuzzInput& input) {
  std::vector<std::vector<std::uint8_t>> pieces;
  std::size_t start = 0;
  for (const std::size_t cut : input.cuts) {
    pieces.emplace_back(input.stream.begin() + static_cast<std::ptrdiff_t>(start),
                        input.stream.begin() + static_cast<std::ptrdiff_t>(cut));
    start = cut;
  }
  pieces.emplace_back(input.stream.begin() + static_cast<std::ptrdiff_t>(start), input.stream.end());
  return pieces;
}

// The body of LLVMFuzzerTestOneInput: runs `check(const FuzzInput&)` on the input, skipping inputs too
// short for their own cut table. libFuzzer wants 0 back.
template <typename Check>
int check_input(const std::uint8_t* data, std::size_t size, Check&& check) {
  if (const std::optional<FuzzInput> input = parse_fuzz_input(data, size)) {
    check(*input);
  }
  return 0;
}

// An invariant failed: say which, then trap so libFuzzer saves the input as a crash.
[[noreturn]] inline void violated(const char* invariant) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", invariant);
  std::abort();
}

inline void require(bool holds, const char* invariant) {
  if (!holds) {
    violated(invariant);
  }
}

// Checks that `frames`, concatenated, are the first bytes of `stream`; returns how many bytes they cover.
inline std::size_t match_stream_prefix(const std::vector<std::vector<std::uint8_t>>& frames,
                                       std::span<const std::uint8_t> stream) {
  std::size_t pos = 0;
  for (const std::vector<std::uint8_t>& frame : frames) {
    require(pos + frame.size() <= stream.size(), "frames lie within the stream");
    require(std::equal(frame.begin(), frame.end(), stream.begin() + static_cast<std::ptrdiff_t>(pos)),
            "frames are the stream's bytes");
    pos += frame.size();
  }
  return pos;
}

// The frame header at `pos` in `stream`, after checking that all 8 of its bytes are there.
inline protocol::FrameHeader header_at(std::span<const std::uint8_t> stream, std::size_t pos) {
  require(stream.size() - pos >= protocol::kHeaderSize, "a header is judged whole");
  return codec::decode_header(
      std::span<const std::uint8_t, protocol::kHeaderSize>(stream.data() + pos, protocol::kHeaderSize));
}

}  // namespace ringhub::fuzz
