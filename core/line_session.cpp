// LineSession: one X's attempts, connection by connection; see core/line_session.hpp. Every wait is a
// timer the adapter arms, every byte goes out through it, so the rules run here without a socket.
#include "core/line_session.hpp"

#include <algorithm>
#include <cerrno>
#include <functional>
#include <system_error>
#include <utility>

namespace ringhub {

namespace {

// X as quoted in error messages: cut so a 64 KiB X does not flood a terminal.
constexpr std::size_t kShownPayloadBytes = 64;

std::string_view without_newline(std::string_view line) {
  return line.substr(0, line.size() - 1);
}

std::string ms_text(std::int64_t ns) {
  return std::to_string(ns / 1'000'000) + " ms";
}

// The heap's order: the earliest due on top, ties in arrival order.
struct LaterDue {
  template <typename T>
  bool operator()(const T& a, const T& b) const {
    return a.due_ns != b.due_ns ? a.due_ns > b.due_ns : a.order > b.order;
  }
};

}  // namespace

std::string attempts_text(unsigned n) {
  std::string text = std::to_string(n);
  text += n == 1 ? " attempt" : " attempts";
  return text;
}

std::string shown_line_payload(std::string_view x) {
  std::size_t cut = std::min(x.size(), kShownPayloadBytes);
  while (cut > 0 && cut < x.size() && (static_cast<unsigned char>(x[cut]) & 0xC0) == 0x80) {
    --cut;  // do not split a UTF-8 sequence
  }
  std::string text(x.substr(0, cut));
  const auto control = [](char c) { return (c >= 0 && c < 0x20) || c == 0x7f; };
  std::replace_if(text.begin(), text.end(), control, '?');
  return cut < x.size() ? text + "..." : text;
}

LineSession::LineSession(const LineSessionConfig& config, LineSessionIo& io, std::uint32_t tag, std::string x)
    : config_(config), io_(io), tag_(tag), x_(std::move(x)) {}

void LineSession::start() {
  if (state_ != State::kIdle && state_ != State::kBackoff) {
    return;  // started already, or settled
  }
  ++counts_.attempts;
  state_ = State::kConnecting;
  io_.connect(tag_);
}

void LineSession::on_connected(std::int64_t now_ns) {
  if (state_ != State::kConnecting) {
    return;
  }
  counts_.reconnects += connected_before_ ? 1 : 0;
  connected_before_ = true;
  state_ = State::kOpen;
  open_ = std::make_unique<Open>(config_.max_line_bytes);
  delayed_.clear();
  delayed_bytes_ = 0;
  oks_unwritten_ = 0;
  ok_ns_.reset();
  error_.reset();
  append_message_line(open_->out, x_);
  io_.send(tag_, open_->out);
  open_->out.clear();
  message_unwritten_ = true;
  message_ns_ = now_ns;
  io_.arm(tag_, LineTimer::kOkTimeout, config_.ok_timeout_ns);
}

void LineSession::on_bytes(std::span<const std::uint8_t> bytes, std::int64_t now_ns) {
  if (error_ || (state_ != State::kOpen && state_ != State::kClosing)) {
    return;  // closing for a failure: nothing more to answer
  }
  const LineStatus status =
      open_->splitter.feed(bytes, [&](std::string_view line) { return on_line(line, now_ns); });
  if (status == LineStatus::kTooLong) {
    surprise(LineSurprise::kOverlongLine, {});
    end_attempt(system_error(
        EPROTO, "hub sent a line longer than " + std::to_string(config_.max_line_bytes) + " bytes"));
    return;
  }
  if (error_) {
    io_.close(tag_);
    return;
  }
  if (state_ == State::kClosing) {
    return;  // read only for a duplicate `ok X`
  }
  release_due_oks(now_ns);
  if (ok_ns_) {
    after_ok();
    return;
  }
  if (backlog_bytes() > config_.max_backlog_bytes) {
    end_attempt(system_error(ENOBUFS, "hub is not reading our replies: " + std::to_string(backlog_bytes()) +
                                          " bytes of oks held back"));
  }
}

// False stops the splitter: the hub said it is closing, or we are.
bool LineSession::on_line(std::string_view line, std::int64_t now_ns) {
  const LineCommand command = parse_line(line);
  switch (command.verb) {
    case LineCommand::Verb::kMessage:
      if (!ok_ns_) {
        hold_ok(command.payload, now_ns);
      }
      return true;
    case LineCommand::Verb::kOk:
      if (command.payload == x_) {
        if (ok_ns_) {
          return surprise(LineSurprise::kDuplicateOk, line);
        }
        ok_ns_ = now_ns;  // from here on the bytes are read only for a repeated `ok X`
        return true;
      }
      if (ok_ns_) {
        return true;
      }
      return surprise(LineSurprise::kForeignOk, line);
    case LineCommand::Verb::kUnknown: break;
  }
  if (ok_ns_) {
    return true;  // answered: nothing else concerns us now
  }
  if (line == without_newline(kLineTooLongLine)) {
    // Our lines are checked against the hub's default limit, so the hub runs with a smaller one.
    surprise(LineSurprise::kLineTooLong, line);
    error_ = system_error(EMSGSIZE, "hub closed the connection: error line too long");
    x_refused_ = true;
    return false;
  }
  if (line.starts_with(kErrorLinePrefix)) {
    open_->hub_error = shown_line_payload(line);  // the reason, should the hub close after it
  }
  // `error unknown command` (the hub keeps going after it), other error lines, and lines that are no
  // verb at all: none of them concerns our X, and the ok timeout still bounds the wait.
  return surprise(LineSurprise::kOtherLine, line);
}

// The adapter decides whether such a line ends the attempt; the ones kept count as ignored.
bool LineSession::surprise(LineSurprise what, std::string_view line) {
  if (io_.keep_after(tag_, what, line)) {
    counts_.ignored_lines += what == LineSurprise::kForeignOk || what == LineSurprise::kOtherLine ? 1 : 0;
    return true;
  }
  if (!error_) {
    error_ = system_error(EPROTO, "hub said '" + shown_line_payload(line) + "'");
  }
  return false;
}

void LineSession::hold_ok(std::string_view y, std::int64_t now_ns) {
  const std::int64_t delay = io_.ok_delay_ns(tag_);
  delayed_.push_back(DelayedOk{now_ns + delay, next_order_++, std::string(y)});
  std::push_heap(delayed_.begin(), delayed_.end(), LaterDue{});
  delayed_bytes_ += y.size();
  if (delay > 0) {
    io_.arm(tag_, LineTimer::kOkDue, delay);
  }
}

void LineSession::release_due_oks(std::int64_t now_ns) {
  std::string& lines = open_->out;
  while (!delayed_.empty() && delayed_.front().due_ns <= now_ns) {
    std::pop_heap(delayed_.begin(), delayed_.end(), LaterDue{});
    append_ok_line(lines, delayed_.back().y);
    delayed_bytes_ -= delayed_.back().y.size();
    delayed_.pop_back();
    ++oks_unwritten_;
  }
  if (!lines.empty()) {
    io_.send(tag_, lines);
    lines.clear();
  }
}

// `ok X` is in. Answers already due go out before we close: at once when the kernel has taken them, else
// when it does (on_drained) or at the ok timeout at the latest. What is never written, the hub forwards
// again once we are gone.
void LineSession::after_ok() {
  state_ = State::kClosing;
  if (io_.unsent_bytes(tag_) == 0) {
    io_.close(tag_);
  }
}

void LineSession::on_drained(std::int64_t now_ns) {
  if (message_unwritten_) {
    message_unwritten_ = false;
    if (!ok_ns_) {  // drained after `ok X` came (oks queued behind it): keep the time it was queued
      message_ns_ = now_ns;
    }
  }
  counts_.oks_sent += std::exchange(oks_unwritten_, 0);
  if (ok_ns_) {
    io_.close(tag_);
  }
}

void LineSession::on_timer(LineTimer timer, std::int64_t now_ns) {
  switch (timer) {
    case LineTimer::kRetry:
      if (state_ == State::kBackoff) {
        start();
      }
      return;
    case LineTimer::kOkDue:
      if (state_ == State::kOpen && !error_) {
        release_due_oks(now_ns);
      }
      return;
    case LineTimer::kOkTimeout:
      if (state_ == State::kClosing || (state_ == State::kOpen && error_)) {
        io_.close(tag_);  // the answers due after `ok X` were not taken in time
      } else if (state_ == State::kOpen) {
        ++counts_.ok_timeouts;
        end_attempt(system_error(ETIMEDOUT, "no ok within " + ms_text(config_.ok_timeout_ns)));
      }
      return;
  }
}

void LineSession::end_attempt(Error why) {
  error_ = std::move(why);
  io_.close(tag_);
}

void LineSession::on_closed(const LineConnectionEnd& end) {
  if (state_ != State::kConnecting && state_ != State::kOpen && state_ != State::kClosing) {
    return;  // given up, or a close the session did not expect
  }
  const std::string hub_error = open_ ? std::move(open_->hub_error) : std::string();
  forget_connection();
  if (ok_ns_) {
    latency_ns_ = *ok_ns_ - message_ns_;
    settle(State::kDone);
    return;
  }
  counts_.connect_timeouts += !end.was_open && end.error == ETIMEDOUT ? 1 : 0;
  after_failed_attempt(error_ ? *std::exchange(error_, std::nullopt) : closed_error(end, hub_error));
}

Error LineSession::closed_error(const LineConnectionEnd& end, std::string_view hub_error) const {
  if (!end.was_open) {
    const int err = end.error != 0 ? end.error : ECONNREFUSED;
    const std::string why =
        err == ETIMEDOUT ? "timed out while connecting" : std::system_category().message(err);
    return system_error(err, "cannot reach hub at " + config_.endpoint + ": " + why);
  }
  if (end.eof || end.error == 0) {
    // `error server full`, `error slow consumer`: the hub's last words say why.
    return make_error(hub_error.empty() ? std::string("hub closed the connection")
                                        : "hub closed the connection: " + std::string(hub_error));
  }
  return system_error(end.error, "connection to hub failed: " + std::system_category().message(end.error));
}

void LineSession::after_failed_attempt(const Error& why) {
  if (x_refused_) {
    io_.attempt_failed(tag_, why, std::nullopt);
    error_ = rephrase(why, "no ok for '" + shown_line_payload(x_) + "': " + why.message +
                               " (the hub's lines are shorter than X needs: a resend would be refused too)");
    settle(State::kFailed);
    return;
  }
  if (counts_.attempts >= config_.max_attempts) {
    io_.attempt_failed(tag_, why, std::nullopt);
    error_ = rephrase(why, "no ok for '" + shown_line_payload(x_) + "' after " +
                               attempts_text(config_.max_attempts) + ": last error: " + why.message);
    settle(State::kFailed);
    return;
  }
  const std::int64_t pause = config_.backoff.before_attempt(counts_.attempts + 1, io_.random(tag_));
  state_ = State::kBackoff;
  io_.attempt_failed(tag_, why, pause);
  if (state_ == State::kBackoff) {  // the adapter may have given up meanwhile
    io_.arm(tag_, LineTimer::kRetry, pause);
  }
}

void LineSession::give_up(Error why) {
  if (settled()) {
    return;
  }
  error_ = std::move(why);
  settle(State::kFailed);
}

void LineSession::settle(State state) {
  state_ = state;
  forget_connection();
  io_.settled(tag_);
}

// What only an open connection needs goes, capacity included: 100k settled sessions stay small.
void LineSession::forget_connection() {
  open_.reset();
  std::vector<DelayedOk>().swap(delayed_);
  delayed_bytes_ = 0;
}

}  // namespace ringhub
