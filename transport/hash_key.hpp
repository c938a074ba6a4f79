// The process's secret hash key: drawn once from the kernel at hub start-up and handed to the one
// KeyedHash that every shard shares (HubShared::x_hash). Kept out of core/, which makes no system call.
#pragma once

#include "core/keyed_hash.hpp"
#include "core/result.hpp"

namespace ringhub {

// 16 random bytes from getrandom(2). Blocks only while the kernel's pool is not yet initialised (early
// boot); fails with a message if the kernel refuses (ENOSYS, or a seccomp profile that blocks it).
Result<HashKey> draw_hash_key();

}  // namespace ringhub
