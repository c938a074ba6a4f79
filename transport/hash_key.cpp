// draw_hash_key: getrandom(2) for the SipHash key; see transport/hash_key.hpp.
#include "transport/hash_key.hpp"

#include <fmt/format.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>

namespace ringhub {

Result<HashKey> draw_hash_key() {
  HashKey key;
  std::size_t filled = 0;
  while (filled < key.bytes.size()) {
    // Flags 0: the urandom source, which blocks only until the pool is first initialised.
    const ssize_t n = getrandom(key.bytes.data() + filled, key.bytes.size() - filled, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      return system_error(err,
                          fmt::format("cannot draw the hash key from getrandom(2): {}", std::strerror(err)));
    }
    filled += static_cast<std::size_t>(n);
  }
  return key;
}

}  // namespace ringhub
