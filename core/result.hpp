// Result<T>: a value or an Error, the std::expected-style return used where a caller must handle
// failure (g++ 12 has no std::expected). Cheap to move; no exceptions involved.
#pragma once

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include "core/protocol.hpp"

namespace ringhub {

// What an Error's code means: an errno and a protocol ErrorCode share small numbers (EPERM is 1, so is
// ErrorCode::kUnknownType), so a code is read only with its domain.
enum class ErrorDomain : std::uint8_t {
  kNone,      // no code: the message says it all (bad input or flags, a limit, a peer that closed)
  kSystem,    // an errno value: a failed system call, or a timeout or cancel the caller measured
  kProtocol,  // a protocol::ErrorCode the hub sent in an ERROR frame
  kUsage,     // no code: the settings cannot work together (programs exit 2, as for a bad flag)
};

struct Error {
  ErrorDomain domain = ErrorDomain::kNone;
  int code = 0;  // in `domain`; 0 with kNone
  std::string message;

  bool is_system(int err) const { return domain == ErrorDomain::kSystem && code == err; }
  bool is_protocol(protocol::ErrorCode error_code) const {
    return domain == ErrorDomain::kProtocol && code == static_cast<int>(error_code);
  }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  // Implicit on purpose, as std::expected's: a function returns `value` or an Error directly.
  Result(T value) : state_(std::move(value)) {}
  Result(Error error) : state_(std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // implicit on purpose, as above

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

// The ways to make an Error, one per domain.
inline Error make_error(std::string message) {
  return Error{ErrorDomain::kNone, 0, std::move(message)};
}
// Settings that each parse but cannot work together, found only once the program knows its machine
// (the shard count, the file table).
inline Error usage_error(std::string message) {
  return Error{ErrorDomain::kUsage, 0, std::move(message)};
}
inline Error system_error(int err, std::string message) {
  return Error{ErrorDomain::kSystem, err, std::move(message)};
}
// A failed system call: "doing: errno's text", with errno's code (read when called, by default).
inline Error errno_error(std::string_view doing, int err = errno) {
  return system_error(err, std::string(doing) + ": " + std::system_category().message(err));
}
inline Error protocol_error(protocol::ErrorCode code, std::string message) {
  return Error{ErrorDomain::kProtocol, static_cast<int>(code), std::move(message)};
}

// The same message with the cause's domain and code: for an error that explains a lower-level one.
inline Error rephrase(const Error& cause, std::string message) {
  return Error{cause.domain, cause.code, std::move(message)};
}

}  // namespace ringhub
