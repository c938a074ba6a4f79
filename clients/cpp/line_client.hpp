// run_line_client: a self-healing client for the LINE protocol (core/line_protocol.hpp). It sends
// `message X`, answers every `message Y` the hub forwards with `ok Y`, and returns once `ok X` comes
// back, reconnecting with exponential backoff whenever the connection is lost or the ok is late.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace ringhub::client {

// Why an attempt ended without `ok X`, and how long the client waits before the next one.
struct LineRetry {
  unsigned attempt = 0;  // the attempt that failed, from 1
  Error why;
  std::chrono::milliseconds backoff{0};
};

struct LineClientOptions {
  std::string host;
  std::uint16_t port = 0;
  std::string message;  // X: not empty, no "\n", no trailing "\r", fits one hub line
  // How long after a `message Y` arrives its `ok Y` is written; 0 answers at once.
  std::chrono::milliseconds ok_delay{0};
  // Bounds connect() and the wait for `ok X` after each `message X`; past it the attempt is over.
  std::chrono::milliseconds timeout{5000};
  unsigned max_attempts = 10;  // connection attempts in all, the first included
  // The wait before attempt n (n >= 2) is backoff_initial * 2^(n-2), capped at backoff_max, then
  // jittered down to between half and all of that, so clients cut off by one hub restart spread out.
  std::chrono::milliseconds backoff_initial{50};
  std::chrono::milliseconds backoff_max{2000};
  // Called, when set, after each failed attempt that another will follow (for logging; tests use it
  // to change the world between attempts). Runs on the calling thread.
  std::function<void(const LineRetry&)> on_retry;
};

struct LineOutcome {
  unsigned attempts = 0;       // connection attempts made, the successful one included
  unsigned reconnects = 0;     // connections established after an earlier one was lost
  unsigned timeouts = 0;       // attempts that ended by a timeout: connect() or the wait for `ok X`
  std::uint64_t oks_sent = 0;  // `ok Y` lines written whole, over all connections
  // Lines passed over: `error unknown command`, other `error ...` lines the hub keeps going after,
  // `ok Z` for someone else's Z, and lines that are neither verb.
  std::uint64_t ignored_lines = 0;
  std::chrono::nanoseconds latency{0};  // from the last `message X` written to `ok X` received
};

// Runs until `ok X` arrives (success), max_attempts are used up, or *cancel turns true (checked at
// least every kLineCancelCheck). One thread, one connection at a time on its own small io_uring
// (uring::ClientLoop), every wait bounded. The host is resolved once per run; each attempt tries its
// addresses in turn within the timeout.
//
// Errors: invalid options give EINVAL before any connection is made, and a host that does not resolve
// gives "cannot resolve hub host" at once; cancelling gives ECANCELED;
// running out of attempts gives the last attempt's domain and code (ETIMEDOUT, ECONNREFUSED, EPROTO for
// a line the hub should never send, kNone for EOF, ...) and "no ok for 'X' after N attempts: last
// error: ...".
Result<LineOutcome> run_line_client(const LineClientOptions& options,
                                    const std::atomic<bool>* cancel = nullptr);

// Whether X can be sent as `message X` in one hub line: not empty, no newline, no trailing "\r", and
// short enough. EINVAL with a message saying which, as run_line_client would answer.
Result<void> check_line_message(std::string_view x);

// How often a wait wakes to look at the cancel flag: short enough for Ctrl-C to feel immediate.
inline constexpr std::chrono::milliseconds kLineCancelCheck{50};

}  // namespace ringhub::client
