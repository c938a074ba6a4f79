#!/usr/bin/env bash
# The small version of the 100k-client run, for ctest: starts ringhub on free ports, runs ringhub-stress
# in line mode (2000 clients) and relay mode (500 clients) against it, and fails if either fails.
#   bash perf/stress/stress_smoke.sh build/release/bin/ringhub build/release/bin/ringhub-stress
# Exits 77 (ctest: skipped) where the hub cannot start io_uring.
set -euo pipefail

hub_bin=$1
stress_bin=$2
workdir=$(mktemp -d)
hub_log=$workdir/hub.log
hub_pid=

# SIGTERM asks the hub to stop (it drains for up to its 2 s grace); after 10 s it is killed, so a hub
# that missed the signal cannot hold ctest until its timeout.
cleanup() {
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
trap cleanup EXIT

# Port 0 everywhere: the kernel picks free ports and the hub's ready line names them.
"$hub_bin" --relay-port 0 --line-port 0 --admin-port 0 --max-connections 5000 >"$hub_log" 2>&1 &
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
    echo "stress_smoke: io_uring is unavailable here: skipped" >&2
    exit 77
  fi
  echo "stress_smoke: the hub did not start" >&2
  exit 1
fi
ready=$(grep 'ringhub ready' "$hub_log")
relay_port=$(sed -E 's/.*relay on [^ ]*:([0-9]+),.*/\1/' <<<"$ready")
line_port=$(sed -E 's/.*line on [^ ]*:([0-9]+),.*/\1/' <<<"$ready")
admin_port=$(sed -E 's|.*metrics on http://[^ ]*:([0-9]+)/metrics.*|\1|' <<<"$ready")
echo "stress_smoke: hub pid $hub_pid, relay $relay_port, line $line_port, admin $admin_port"

common=(--admin "127.0.0.1:$admin_port" --hub-pid "$hub_pid" --timeout 5000 --deadline 40)
status=0
"$stress_bin" --mode line --clients 2000 --ramp 2 --ok-delay '0:50%,1ms-20ms:50%' \
  --hub "127.0.0.1:$line_port" "${common[@]}" || status=1
"$stress_bin" --mode relay --clients 500 --ramp 1 --senders 0.05 --relays 2 \
  --hub "127.0.0.1:$relay_port" "${common[@]}" || status=1
if ! kill -0 "$hub_pid" 2>/dev/null; then
  echo "stress_smoke: the hub died during the run" >&2
  cat "$hub_log" >&2
  status=1
fi
exit $status
