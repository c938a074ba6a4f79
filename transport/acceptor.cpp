// Acceptor: keeping a shard's multishot accepts armed; see transport/acceptor.hpp.
#include "transport/acceptor.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "transport/hub_config.hpp"
#include "transport/listener.hpp"
#include "transport/op_tag.hpp"
#include "transport/uring/uring_compat.hpp"

namespace ringhub {

namespace {

// The tag kind of the multishot accept on `protocol`'s listener.
Op accept_op(Protocol protocol) {
  return protocol == Protocol::kLine ? Op::kAcceptLine : Op::kAccept;
}

}  // namespace

void Acceptor::arm_all() {
  for (const Protocol protocol : kProtocols) {
    if (listen_fds_[protocol] >= 0) {
      arm(protocol);
    }
  }
}

void Acceptor::arm(Protocol protocol) {
  if (armed_[protocol] || stopped_ || waiting_for_room_) {
    return;
  }
  io_uring_sqe* entry = ring_.next_sqe();
  // Direct descriptors: sockets live in the ring's file table, not the process fd table (20000 here).
  if (single_shots_) {
    uring_compat::prep_accept_direct_alloc(entry, listen_fds_[protocol]);
  } else {
    io_uring_prep_multishot_accept_direct(entry, listen_fds_[protocol], nullptr, nullptr, 0);
  }
  io_uring_sqe_set_data64(entry, tag(this, accept_op(protocol)));
  armed_[protocol] = true;
}

std::optional<std::uint32_t> Acceptor::on_completion(const io_uring_cqe& cqe, Protocol protocol) {
  if ((cqe.flags & IORING_CQE_F_MORE) == 0) {
    armed_[protocol] = false;
  }
  if (cqe.res < 0 && cqe.res != -ECANCELED && !stopped_) {
    // ENFILE: the file table is full: its reserve for refusals is taken too, by refused clients that
    // have not closed yet (each is held until its EOF or the linger). The shard usually sees it coming
    // (wait_for_room); this is the backstop. EMFILE/ENOMEM/ECONNABORTED: transient, retried every tick.
    if (cqe.res == -ENFILE) {
      wait_for_room();
    } else {
      spdlog::warn("shard {}: accept failed: {}; retrying on the next tick", shard_index_,
                   std::strerror(-cqe.res));
    }
    return std::nullopt;
  }
  if (cqe.res >= 0) {
    table_full_logged_ = false;
  }
  if (cqe.res == -ECANCELED && !stopped_) {
    arm(protocol);  // not our stop: keep accepting
  }
  if (cqe.res < 0) {
    return std::nullopt;  // cancelled, or the listener shut down by stop()
  }
  if (single_shots_) {
    waiting_for_room_ = true;  // the shard offers what room is left once it has admitted this one
  } else {
    arm(protocol);  // the kernel ended the multishot without an error: keep accepting
  }
  return static_cast<std::uint32_t>(cqe.res);
}

void Acceptor::wait_for_room() {
  waiting_for_room_ = true;
  if (!std::exchange(table_full_logged_, true)) {
    spdlog::warn(
        "shard {}: its file table is full, refusals included; new connections wait in the listen queue "
        "until a slot frees",
        shard_index_);
  }
  cancel_armed();
}

void Acceptor::cancel_armed() {
  for (const Protocol protocol : kProtocols) {
    if (armed_[protocol]) {
      ring_.cancel(tag(this, accept_op(protocol)));
    }
  }
}

void Acceptor::offer_room(std::size_t free_slots) {
  waiting_for_room_ = false;
  single_shots_ = free_slots < kRejectReserve;
  if (!single_shots_) {
    arm_all();
    return;
  }
  for (const Protocol protocol : kProtocols) {
    if (listen_fds_[protocol] >= 0 && !armed_[protocol] && armed_count() < free_slots) {
      arm(protocol);
    }
  }
}

void Acceptor::stop() {
  stopped_ = true;
  cancel_armed();
  for (const Protocol protocol : kProtocols) {
    // The shards not stopped yet take new connections, which they close as they stop.
    if (listen_fds_[protocol] >= 0) {
      stop_listening(listen_fds_[protocol]);
    }
  }
}

}  // namespace ringhub
