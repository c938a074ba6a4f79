#!/usr/bin/env bash
# Shared by the ctest smoke scripts of perf/: start_smoke_hub BIN [FLAGS...] starts ringhub on ports the
# kernel picks and sets hub_pid, relay_port, line_port, admin_port (exit 77 where io_uring is missing);
# the EXIT trap stops it: SIGTERM, then SIGKILL after 10 s, so a hub that missed the signal cannot hold
# ctest until its timeout. Source it; do not run it.

smoke_name=${smoke_name:-smoke}
workdir=$(mktemp -d)
hub_log=$workdir/hub.log
hub_pid=

stop_smoke_hub() {
  if [[ -n $hub_pid ]]; then
    kill -TERM "$hub_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$hub_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap stop_smoke_hub EXIT

start_smoke_hub() {
  local bin=$1
  shift
  "$bin" --relay-port 0 --line-port 0 --admin-port 0 "$@" >"$hub_log" 2>&1 &
  hub_pid=$!
  for _ in $(seq 100); do  # at most 10 s
    if grep -q 'ringhub ready' "$hub_log" || ! kill -0 "$hub_pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  if ! grep -q 'ringhub ready' "$hub_log"; then
    cat "$hub_log" >&2
    if grep -qi 'io_uring' "$hub_log"; then
      echo "$smoke_name: io_uring is unavailable here: skipped" >&2
      exit 77
    fi
    echo "$smoke_name: the hub did not start" >&2
    exit 1
  fi
  local ready
  ready=$(grep 'ringhub ready' "$hub_log")
  relay_port=$(sed -E 's/.*relay on [^ ]*:([0-9]+),.*/\1/' <<<"$ready")
  line_port=$(sed -E 's/.*line on [^ ]*:([0-9]+),.*/\1/' <<<"$ready")
  admin_port=$(sed -E 's|.*metrics on http://[^ ]*:([0-9]+)/metrics.*|\1|' <<<"$ready")
  echo "$smoke_name: hub pid $hub_pid, relay $relay_port, line $line_port, admin $admin_port"
}
