#!/usr/bin/env bash
# Side-by-side run of ringhub, NATS and Redis pub/sub on this box, loopback only: each server in turn
# pinned to CPU 0, driven by ringhub-perf pinned to CPU 1; then idle-connection scale and the box's
# physical limits. perf/compare/report.py turns the runs into results.json, README.md and PNG plots.
#   bash perf/compare/compare.sh                                   # full: 12 cells x 3 repeats, ~15 min
#   bash perf/compare/compare.sh --quick --out /tmp/compare-quick  # 3 cells x 1 repeat, < 3 min
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
report_py=$repo/perf/compare/report.py
out=$repo/docs/perf
build=$repo/build/release
quick=0
repeats=

usage() {
  cat <<EOF
usage: bash perf/compare/compare.sh [--quick] [--out DIR] [--build DIR] [--repeats N]
  --quick       3 cells, 1 s runs, 1 repeat, small connection counts (under 3 minutes)
  --out DIR     where results.json, README.md and the plots go (default docs/perf)
  --build DIR   build dir holding bin/ringhub, bin/ringhub-perf, bin/ringhub-limits (default build/release)
  --repeats N   runs per cell and target (default 3, quick 1); medians and min/max are reported
EOF
}

while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --build) build=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
build=$(mkdir -p "$build" && cd "$build" && pwd)

# --- What a pass runs. Full: 12 cells x 3 targets x 3 repeats x 2 modes x ~3-3.5 s (12-13 min), then
# idle connections (up to 100k; ~1-2 min) and limits (~40 s): about 15 minutes on 2 cores. Quick: 3
# cells, 1 repeat, 10k/5k idle: about 1.5 minutes.
publishers=4
if ((quick)); then
  cells=("1 64" "16 1024" "255 65536")
  duration=1 warmup=0.5 fixed_duration=1 limits_duration=0.5
  repeats=${repeats:-1}
  ringhub_idle=(10000) peer_idle=(5000)
else
  cells=()
  for fanout in 1 16 255; do
    for size in 64 1024 65536 1048576; do cells+=("$fanout $size"); done
  done
  duration=2 warmup=0.5 fixed_duration=2 limits_duration=2
  repeats=${repeats:-3}
  ringhub_idle=(10000 50000 100000) peer_idle=(10000 20000)
fi
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --repeats must be a positive integer" >&2; exit 2; }
# A run that outlives its planned time by this much is killed and recorded as failed (exit 124).
run_slack_s=60
idle_limit_s=300
# Fixed-rate runs publish at this share of the slower peer's saturating publish rate.
fixed_rate_share=0.5

work=$(mktemp -d /tmp/ringhub-compare.XXXXXX)
server_pid=
server_log=
server_broken=
restart_args=()
started_at=$SECONDS

log() { printf '[compare %4ds] %s\n' $((SECONDS - started_at)) "$*" >&2; }

# --- Set-up: packages and binaries.
install_peers() {
  local missing=()
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_binaries() {
  local name absent=0
  for name in ringhub ringhub-perf ringhub-limits; do
    [[ -x $build/bin/$name ]] || absent=1
  done
  ((absent)) || return 0
  log "building the release preset into $build"
  (cd "$repo" && cmake --preset release -B "$build" >/dev/null && cmake --build "$build")
}

# --- Servers. One at a time, pinned to CPU 0; server_pid is what ringhub-perf --server-pid reads.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints the first port from $1 (within 200) such that it and the next $2-1 ports are all free.
free_port() {
  local base=$1 span=$2 port offset busy
  for ((port = base; port < base + 200; port += span)); do
    busy=0
    for ((offset = 0; offset < span; offset++)); do
      port_in_use $((port + offset)) && busy=1
    done
    ((busy)) || { echo "$port"; return 0; }
  done
  echo "compare.sh: no free ports from $base" >&2
  return 1
}

# Waits (at most 10 s) for the server to accept on port $1; fails with its log tail if it died.
await_server() {
  local port=$1
  for _ in $(seq 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "compare.sh: server exited during start-up:" >&2
      tail -n 20 "$server_log" >&2
      return 1
    fi
    port_in_use "$port" && return 0
    sleep 0.1
  done
  echo "compare.sh: server did not accept on 127.0.0.1:$port within 10 s" >&2
  tail -n 20 "$server_log" >&2
  return 1
}

# SIGTERM, then SIGKILL after 10 s: a server that ignores the signal cannot hold the run.
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap 'stop_server; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM  # through the EXIT trap, so no server outlives an interrupted run

# start_server TARGET [ringhub max-connections] [ringhub shards]: sets server_pid and server_port.
# Returns non-zero (with the reason on stderr) when the server does not come up; callers record that
# and go on with the next target (explicit returns: callers test the status, which turns off set -e).
start_server() {
  local target=$1 max_connections=${2:-10000} shards=${3:-1}
  server_log=$work/$target.log
  server_pid=
  case $target in
    ringhub)
      server_port=$(free_port 17400 3) || return 1
      local shard_flag=(--shards "$shards")
      [[ $shards == auto ]] && shard_flag=()
      taskset -c 0 "$build/bin/ringhub" --bind 127.0.0.1 --relay-port "$server_port" \
        --line-port $((server_port + 1)) --admin-port $((server_port + 2)) "${shard_flag[@]}" \
        --max-connections "$max_connections" --log-level warn >"$server_log" 2>&1 &
      server_pid=$!
      await_server $((server_port + 2))  # the admin port: a probe there takes no relay id
      ;;
    nats)
      server_port=$(free_port 17410 1) || return 1
      write_nats_config "$server_port" >"$work/nats.conf"
      GOMAXPROCS=1 taskset -c 0 nats-server -c "$work/nats.conf" >"$server_log" 2>&1 &
      server_pid=$!
      await_server "$server_port"
      ;;
    redis)
      server_port=$(free_port 17420 1) || return 1
      # maxclients above the open-file limit: Redis lowers it to what the limit allows, so the
      # connection-scale run finds the real ceiling rather than Redis's default of 10000.
      taskset -c 0 redis-server --bind 127.0.0.1 --port "$server_port" --save '' --appendonly no \
        --io-threads 1 --client-output-buffer-limit 'pubsub 256mb 64mb 60' --protected-mode no \
        --maxclients 100000 --logfile '' >"$server_log" 2>&1 &
      server_pid=$!
      await_server "$server_port"
      ;;
  esac
}

# max_payload 2MB so 1 MiB bodies pass (the default is 1 MB); pending per client stays at NATS's
# default 64 MB, the same as ringhub's --max-outbound-bytes. No log file: stderr goes to $work.
write_nats_config() {
  cat <<EOF
listen: 127.0.0.1:$1
max_payload: 2MB
max_connections: 100000
EOF
}

# --- Runs. Each is bounded by timeout(1) and recorded by report.py, failed, skipped or not.
# serve TARGET [start_server args]: starts the server for a series of runs; a server that does not
# come up marks the series broken, and its runs are recorded as skipped.
serve() {
  restart_args=("${@:2}")
  server_broken=
  if ! start_server "$@"; then
    server_broken="$1 did not start: $(tail -n 3 "$server_log" 2>/dev/null | tr '\n' ' ')"
    log "$server_broken"
    stop_server  # one that is up but never accepted
  fi
}

# Restarts a server that died since the last run (recorded in server_events.txt).
revive_server() {
  local target=$1 where=$2
  [[ -z $server_broken ]] && kill -0 "$server_pid" 2>/dev/null && return 0
  [[ -n $server_broken ]] && return 1
  log "$target died; restarting it (recorded)"
  { echo "$target died before $where; restarted. Its log:"; tail -n 20 "$server_log"; } \
    >>"$work/server_events.txt" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  serve "$target" "${restart_args[@]}"
  [[ -z $server_broken ]]
}

# run_perf KIND TARGET MODE FANOUT SIZE REPEAT RATE LIMIT_S ARGS...
run_perf() {
  local kind=$1 target=$2 mode=$3 fanout=$4 size=$5 repeat=$6 rate=$7 limit=$8
  shift 8
  if ! revive_server "$target" "$mode K=$fanout S=$size #$repeat"; then
    python3 "$report_py" skip --jsonl "$work/$kind.jsonl" --target "$target" --mode "$mode" \
      --fanout "$fanout" --size "$size" --connections "$(idle_count "$@")" --reason "$server_broken"
    return 0
  fi
  local command=(taskset -c 1 "$build/bin/ringhub-perf" --target "$target" --addr "127.0.0.1:$server_port"
    "$@" --server-pid "$server_pid" --json)
  local t0=$SECONDS rc=0
  timeout --kill-after=5 "$limit" "${command[@]}" >"$work/stdout" 2>"$work/stderr" || rc=$?
  python3 "$report_py" record --jsonl "$work/$kind.jsonl" --target "$target" --mode "$mode" \
    --fanout "$fanout" --size "$size" --repeat "$repeat" --rate "$rate" --exit-code "$rc" \
    --elapsed $((SECONDS - t0)) --stdout "$work/stdout" --stderr "$work/stderr" --command "${command[*]}"
}

# The --idle-conns value among ringhub-perf's arguments, or 0.
idle_count() {
  while [[ $# -gt 1 ]]; do
    [[ $1 == --idle-conns ]] && { echo "$2"; return; }
    shift
  done
  echo 0
}

saturating_pass() {
  local target cell fanout size repeat limit
  limit=$(python3 -c "print(int($warmup + $duration + $run_slack_s))")
  for target in ringhub nats redis; do
    serve "$target"
    for cell in "${cells[@]}"; do
      read -r fanout size <<<"$cell"
      for ((repeat = 1; repeat <= repeats; repeat++)); do
        run_perf matrix "$target" saturating "$fanout" "$size" "$repeat" 0 "$limit" \
          --publishers "$publishers" --fanout "$fanout" --size "$size" --duration "$duration" \
          --warmup "$warmup"
      done
    done
    stop_server
  done
}

# The rate of each cell: fixed_rate_share x the slower peer's median saturating publish rate.
# A slow rate stretches its cell's run (report.py fixed_duration) so that it publishes a few messages.
fixed_pass() {
  local target fanout size rate seconds basis repeat limit
  declare -A rates=() durations=()
  while read -r fanout size rate seconds basis; do
    rates["$fanout $size"]=$rate
    durations["$fanout $size"]=$seconds
    log "fixed rate K=$fanout S=$size: $rate published/s for $seconds s ($basis)"
  done < <(python3 "$report_py" rates --jsonl "$work/matrix.jsonl" --share "$fixed_rate_share" \
    --duration "$fixed_duration")
  for target in ringhub nats redis; do
    serve "$target"
    for cell in "${cells[@]}"; do
      read -r fanout size <<<"$cell"
      rate=${rates[$cell]:-0}
      if [[ $rate == 0 ]]; then
        python3 "$report_py" skip --jsonl "$work/matrix.jsonl" --target "$target" --mode fixed \
          --fanout "$fanout" --size "$size" --reason "no successful saturating run in this cell to set a rate"
        continue
      fi
      seconds=${durations[$cell]}
      limit=$(python3 -c "print(int($warmup + $seconds + $run_slack_s))")
      for ((repeat = 1; repeat <= repeats; repeat++)); do
        run_perf matrix "$target" fixed "$fanout" "$size" "$repeat" "$rate" "$limit" \
          --publishers "$publishers" --fanout "$fanout" --size "$size" --duration "$seconds" \
          --warmup "$warmup" --rate "$rate"
      done
    done
    stop_server
  done
}

# Idle connections: a fresh server per count, so RSS before is a clean start. No pause for the last
# run's TIME_WAIT sockets: ringhub-perf binds 127.0.0.x with IP_BIND_ADDRESS_NO_PORT (5000 per source),
# so connect picks ports per 4-tuple and loopback may reuse TIME_WAIT ones (net.ipv4.tcp_tw_reuse).
idle_pass() {
  local target count
  for count in "${ringhub_idle[@]}"; do
    serve ringhub 110000 auto
    run_perf idle ringhub idle 0 0 1 0 "$idle_limit_s" --idle-conns "$count"
    stop_server
  done
  for target in nats redis; do
    for count in "${peer_idle[@]}"; do
        serve "$target"
      run_perf idle "$target" idle 0 0 1 0 "$idle_limit_s" --idle-conns "$count"
      stop_server
    done
  done
}

# The single streams unpinned: on this 2-core VM the kernel's own placement of the sender and receiver
# threads gave the highest loopback figures (1 MiB writes: 2.2-4.0 GB/s; both threads on one CPU 2.5, one
# on each 1.3-2.4). The relay floor pinned as the matrix is: relay on CPU 0, writers and readers on 1.
limits_pass() {
  local rc=0
  timeout --kill-after=5 300 "$build/bin/ringhub-limits" --duration "$limits_duration" --repeats 3 \
    --relay-cpu 0 --load-cpu 1 --relay-streams "$publishers" --json \
    >"$work/limits.json" 2>"$work/limits.err" || rc=$?
  echo "$rc" >"$work/limits.rc"
}

write_settings() {
  cat >"$work/settings.env" <<EOF
quick=$quick
repeats=$repeats
publishers=$publishers
duration_s=$duration
warmup_s=$warmup
fixed_duration_s=$fixed_duration
fixed_rate_share=$fixed_rate_share
limits_duration_s=$limits_duration
ringhub_idle=${ringhub_idle[*]}
peer_idle=${peer_idle[*]}
cells=$(printf '%s;' "${cells[@]}")
build=$build
EOF
}

install_peers
build_binaries
write_settings
: >"$work/matrix.jsonl"
: >"$work/idle.jsonl"
log "saturating pass: ${#cells[@]} cells x 3 targets x $repeats"
saturating_pass
log "fixed-rate pass"
fixed_pass
log "connection scale"
idle_pass
log "physical limits"
limits_pass
python3 "$report_py" build --work "$work" --out "$out" --elapsed $((SECONDS - started_at)) --repo "$repo"
log "done in $((SECONDS - started_at)) s: $out/README.md"
