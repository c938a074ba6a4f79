#!/usr/bin/env bash
# The small version of ringhub-perf's runs, for ctest: starts ringhub (one shard) on free loopback ports and
# runs ringhub-perf saturating, at a fixed rate, with 1 MiB bodies and with 500 idle connections, then a
# short saturating run against nats-server and redis-server where they are installed (skipped otherwise).
#   bash perf/loadgen/loadgen_smoke.sh build/release/bin/ringhub build/release/bin/ringhub-perf
# Every run must exit 0 and its JSON must say verified, delivered and timed (idle: all 500 open). Exits 77
# (ctest: skipped) where the hub cannot start io_uring or python3 (the JSON checks) is missing.
set -euo pipefail

hub_bin=$1
perf_bin=$2
workdir=$(mktemp -d)
deadline=$((SECONDS + 55))  # the whole script stays under a minute; each run gets what is left
pids=()

# SIGTERM asks each server to stop (the hub drains for its grace, 500 ms here); after 5 s it is killed.
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$workdir"
}
trap cleanup EXIT

if ! command -v python3 >/dev/null; then
  echo "loadgen_smoke: python3 (for the JSON checks) is missing: skipped" >&2
  exit 77
fi

# wait_for_log FILE PATTERN PID: at most 10 s for PATTERN to appear in FILE while PID lives.
wait_for_log() {
  for _ in $(seq 100); do
    if grep -q "$2" "$1" || ! kill -0 "$3" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  grep -q "$2" "$1"
}

# A port the kernel just handed out and took back: free unless something grabs it in between.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# check_json NAME FILE PYTHON-EXPRESSION: the expression, over the JSON object `r`, must be true.
check_json() {
  if ! python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
if not eval(sys.argv[2]):
    sys.exit(1)
' "$2" "$3"; then
    echo "loadgen_smoke: $1: the JSON does not satisfy $3:" >&2
    cat "$2" >&2
    return 1
  fi
}

# run_perf NAME CHECK ARGS...: runs ringhub-perf --json with ARGS within what is left of the deadline, and
# fails unless it exits 0 and its JSON satisfies CHECK.
run_perf() {
  local name=$1 check=$2 left=$((deadline - SECONDS))
  shift 2
  if ((left <= 0)); then
    echo "loadgen_smoke: $name: no time left" >&2
    return 1
  fi
  local started=$SECONDS
  if ! timeout -k 2 "$left" "$perf_bin" --json "$@" >"$workdir/$name.json" 2>"$workdir/$name.err"; then
    echo "loadgen_smoke: $name failed: $perf_bin --json $*" >&2
    cat "$workdir/$name.err" "$workdir/$name.json" >&2
    return 1
  fi
  check_json "$name" "$workdir/$name.json" "$check" || return 1
  echo "loadgen_smoke: $name ok ($((SECONDS - started)) s): $(head -c 300 "$workdir/$name.json")..."
}

bench_ok='r["verify"]["ok"] is True and r["delivered"] > 0 and r["latency_ns"]["count"] > 0'
bench_ok+=' and not r["errors"]'
idle_ok='r["opened"] == 500 and r["failed"] == 0'
short=(--duration 0.5 --warmup 0.2)
k16=(--fanout 16 --size 1024 --checksum)  # 16 receivers per message, 1 KiB bodies, each summed

# --- ringhub. Port 0 everywhere: the kernel picks free ports and the hub's ready line names them.
"$hub_bin" --bind 127.0.0.1 --relay-port 0 --line-port 0 --admin-port 0 --shards 1 \
  --shutdown-grace-ms 500 >"$workdir/hub.log" 2>&1 &
hub_pid=$!
pids+=("$hub_pid")
if ! wait_for_log "$workdir/hub.log" 'ringhub ready' "$hub_pid"; then
  cat "$workdir/hub.log" >&2
  if grep -qi 'io_uring' "$workdir/hub.log"; then
    echo "loadgen_smoke: io_uring is unavailable here: skipped" >&2
    exit 77
  fi
  echo "loadgen_smoke: the hub did not start" >&2
  exit 1
fi
relay_port=$(sed -E 's/.*relay on [^ ]*:([0-9]+),.*/\1/' <<<"$(grep 'ringhub ready' "$workdir/hub.log")")
echo "loadgen_smoke: hub pid $hub_pid, relay port $relay_port"

hub=(--target ringhub --addr "127.0.0.1:$relay_port" --server-pid "$hub_pid")
status=0
# The load generator's own CPU over the window is what says which side set the pace.
run_perf ringhub_saturating "$bench_ok and r[\"load\"][\"cpu_s\"] > 0" "${hub[@]}" "${short[@]}" "${k16[@]}" || status=1
run_perf ringhub_fixed_rate "$bench_ok and r[\"mode\"] == \"fixed\"" "${hub[@]}" "${short[@]}" "${k16[@]}" \
  --rate 2000 || status=1
run_perf ringhub_1mib "$bench_ok" "${hub[@]}" "${short[@]}" --fanout 2 --size 1048576 --checksum || status=1
run_perf ringhub_idle "$idle_ok" "${hub[@]}" --idle-conns 500 || status=1
if ! kill -0 "$hub_pid" 2>/dev/null; then
  echo "loadgen_smoke: the hub died during the runs" >&2
  cat "$workdir/hub.log" >&2
  status=1
fi

# --- NATS: -p -1 lets the server pick a port, which its log names.
if command -v nats-server >/dev/null; then
  nats-server -a 127.0.0.1 -p -1 >"$workdir/nats.log" 2>&1 &
  nats_pid=$!
  pids+=("$nats_pid")
  if wait_for_log "$workdir/nats.log" 'Listening for client connections' "$nats_pid"; then
    nats_port=$(sed -nE 's/.*Listening for client connections on [^ ]*:([0-9]+).*/\1/p' "$workdir/nats.log")
    run_perf nats_saturating "$bench_ok" --target nats --addr "127.0.0.1:$nats_port" \
      --server-pid "$nats_pid" "${short[@]}" "${k16[@]}" || status=1
  else
    echo "loadgen_smoke: nats-server did not start" >&2
    cat "$workdir/nats.log" >&2
    status=1
  fi
else
  echo "loadgen_smoke: nats-server is not installed: its run is skipped"
fi

# --- Redis: no port-0 mode (0 turns TCP off), so a port just found free, tried up to three times.
if command -v redis-server >/dev/null; then
  redis_up=0
  for attempt in 1 2 3; do
    redis_port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --protected-mode no \
      --logfile '' >"$workdir/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    if wait_for_log "$workdir/redis.log" 'Ready to accept connections' "$redis_pid"; then
      redis_up=1
      break
    fi
    echo "loadgen_smoke: redis-server attempt $attempt on port $redis_port failed" >&2
    cat "$workdir/redis.log" >&2
  done
  if ((redis_up)); then
    run_perf redis_saturating "$bench_ok" --target redis --addr "127.0.0.1:$redis_port" \
      --server-pid "$redis_pid" "${short[@]}" "${k16[@]}" || status=1
  else
    status=1
  fi
else
  echo "loadgen_smoke: redis-server is not installed: its run is skipped"
fi

echo "loadgen_smoke: done in $SECONDS s, status $status"
exit $status
