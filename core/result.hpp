// Result<T>: a value or an Error, the std::expected-style return used where a caller must handle
// failure (g++ 12 has no std::expected). Cheap to move; no exceptions involved.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace ringhub {

struct Error {
  int code = 0;  // errno, a protocol ErrorCode, or 0 when only the message matters
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  // Implicit on purpose, as std::expected's: a function returns `value` or `Error{...}` directly.
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

inline Error make_error(std::string message, int code = 0) {
  return Error{code, std::move(message)};
}

}  // namespace ringhub
