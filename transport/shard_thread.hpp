// The loop of one hub thread: it drives one shard, or several (threads follow cores, shards follow
// the direct-descriptor tables; see docs/design.md, "Threads, shards and rings").
#pragma once

#include <span>

namespace ringhub {

class Shard;

// Runs `shards` (initialised on this thread) until every one has finished. One shard blocks in its
// own ring. Several are stepped in turn, and the thread blocks in poll() on their ring fds only when
// a whole round handled no completion.
void drive_shards(std::span<Shard* const> shards);

}  // namespace ringhub
