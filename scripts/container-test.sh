#!/usr/bin/env bash
# Builds the ringhub image and checks the hub running from it, driven from the host: /healthz through
# the image's own probe, a relay and a line round trip with ringhub-client, short ringhub-stress runs,
# zero state through /metrics, and a clean exit within the shutdown grace on SIGTERM. Run as root:
#   bash scripts/container-test.sh              # docker if it runs containers, else podman run, else chroot
#   bash scripts/container-test.sh --path chroot
# Paths: "docker" and "podman" start a container with deploy/seccomp-ringhub.json; where neither can
# start one (this sandbox: crun and runc fail setting RLIMIT_NPROC), "chroot" exports the image into a
# directory and runs its hub there as the image's user (seccomp is not exercised then). Not in CI: the
# image build compiles the project, minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly image=ringhub
readonly base_image=docker.io/library/debian:bookworm-slim
readonly profile=deploy/seccomp-ringhub.json
readonly bin=build/release/bin
readonly grace_ms=2000          # the hub's --shutdown-grace-ms default
readonly exit_margin_ms=1000    # thread joins and process exit after the grace
readonly ready_tries=100        # x 0.1 s: how long the hub may take to start
readonly nofile=20000           # this machine's hard open-files limit; a container may not exceed it
# How the hub's container runs: the io_uring-aware profile and a nofile limit the host can grant.
readonly run_options=(--security-opt "seccomp=${profile}" --ulimit "nofile=${nofile}:${nofile}")

path=auto
engine=
workdir=$(mktemp -d /tmp/ringhub-container-test.XXXXXX)
container_id=
hub_pid=
rootfs=
mounted=()
relay_port=''
line_port=''
admin_port=''

log() { echo "container-test: $*"; }
die() {
  log "FAILED: $*" >&2
  exit 1
}

cleanup() {
  local status=$?
  if [[ -n ${container_id} ]]; then
    "${engine}" rm -f "${container_id}" >/dev/null 2>&1 || true
  fi
  if [[ -n ${hub_pid} ]] && kill -0 "${hub_pid}" 2>/dev/null; then
    kill -KILL "${hub_pid}" 2>/dev/null || true
    wait "${hub_pid}" 2>/dev/null || true
  fi
  local m unmounted=1
  for m in "${mounted[@]}"; do
    umount "${m}" || {
      log "could not unmount ${m}; unmount it, then remove ${workdir}" >&2
      unmounted=0
    }
  done
  # Never delete through a bind mount of the host's /dev or /proc.
  ((unmounted)) && rm -rf --one-file-system "${workdir}"
  exit "${status}"
}
trap cleanup EXIT

parse_args() {
  while (($# > 0)); do
    case $1 in
      --path)
        path=${2:?--path needs docker, podman, chroot or auto}
        shift 2
        ;;
      *) die "usage: $0 [--path docker|podman|chroot|auto]" ;;
    esac
  done
  [[ ${path} =~ ^(auto|docker|podman|chroot)$ ]] || die "unknown path ${path}"
}

# The host side needs ringhub-client and ringhub-stress from the release build.
build_host_tools() {
  if [[ ! -x ${bin}/ringhub-client || ! -x ${bin}/ringhub-stress ]]; then
    bash scripts/install-deps.sh
    nice -n 5 cmake --preset release
    nice -n 5 cmake --build --preset release --target ringhub-client ringhub-stress
  fi
}

pick_engine() {
  if [[ ${path} == docker || ${path} == podman ]]; then
    engine=${path}
    command -v "${engine}" >/dev/null || die "${engine} is not installed"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null; then
    engine=podman
  else
    die "neither a running docker nor podman found (Debian: apt-get install podman)"
  fi
}

# Podman with no registry in reach: build the base image from a minbase debootstrap of the archive
# apt already uses.
ensure_base_image() {
  [[ ${engine} == podman ]] || return 0
  podman image exists "${base_image}" && return 0
  command -v debootstrap >/dev/null || die "no ${base_image} and no debootstrap (apt-get install debootstrap)"
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n ${mirror} ]] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  log "no ${base_image}: debootstrapping a minbase bookworm from apt's archive"
  nice -n 5 debootstrap --variant=minbase bookworm "${workdir}/base" "${mirror}" >"${workdir}/debootstrap.log"
  tar -C "${workdir}/base" -c . | podman import - "${base_image}" >/dev/null
  rm -rf "${workdir}/base"
}

build_image() {
  log "building the image with ${engine}"
  local start=${SECONDS}
  if [[ ${engine} == podman ]]; then
    # --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
    nice -n 5 podman build --format docker --isolation=chroot --network host -t "${image}" . \
      >"${workdir}/build.log" 2>&1 ||
      { tail -n 40 "${workdir}/build.log"; die "podman build failed"; }
  else
    nice -n 5 docker build -t "${image}" . >"${workdir}/build.log" 2>&1 ||
      { tail -n 40 "${workdir}/build.log"; die "docker build failed"; }
  fi
  log "image built in $((SECONDS - start)) s; size $(image_size)"
}

image_size() {
  local bytes
  bytes=$("${engine}" image inspect "${image}" --format '{{.Size}}')
  echo "$((bytes / 1000000)) MB (${bytes} bytes)"
}

# The image's stop signal, user and health check, as Docker and compose will use them.
check_image_config() {
  local signal user health
  signal=$("${engine}" image inspect "${image}" --format '{{.Config.StopSignal}}')
  user=$("${engine}" image inspect "${image}" --format '{{.Config.User}}')
  local health_field=.Config.Healthcheck.Test  # podman keeps it outside the OCI config
  [[ ${engine} == podman ]] && health_field=.HealthCheck.Test
  health=$("${engine}" image inspect "${image}" --format "{{json ${health_field}}}")
  [[ ${signal} == SIGTERM ]] || die "the image's stop signal is '${signal}', not SIGTERM"
  [[ ${user} == ringhub ]] || die "the image runs as '${user}', not ringhub"
  [[ ${health} == '["CMD","ringhub-admin-get","7402","/healthz"]' ]] || die "the image's health check is ${health}"
  log "image config: user ${user}, stop signal ${signal}, health check ${health}"
}

# True if this engine can start a container here, with the profile the hub needs.
can_run_containers() {
  "${engine}" run --rm "${run_options[@]}" --no-healthcheck --entrypoint true "${image}" \
    >"${workdir}/run-probe.log" 2>&1
}

choose_path() {
  if [[ ${path} == auto ]]; then
    if can_run_containers; then
      path=${engine}
    else
      log "${engine} cannot start containers here: $(tail -n 1 "${workdir}/run-probe.log")"
      path=chroot
    fi
  fi
  log "path: ${path}"
}

# --- the container path ------------------------------------------------------------------------------

start_container() {
  container_id=$("${engine}" run -d "${run_options[@]}" -p 127.0.0.1::7400 -p 127.0.0.1::7401 \
    -p 127.0.0.1::7402 "${image}" --max-connections 5000)
  log "container ${container_id:0:12} started"
  relay_port=$(published_port 7400) line_port=$(published_port 7401) admin_port=$(published_port 7402)
  wait_until_ready "${engine} logs ${container_id}"
}

published_port() {
  "${engine}" port "${container_id}" "$1/tcp" | head -n 1 | sed 's/.*://'
}

# --- the export-and-chroot path ----------------------------------------------------------------------

start_chroot_hub() {
  rootfs=${workdir}/rootfs
  mkdir -p "${rootfs}"
  local cid
  cid=$("${engine}" create --no-healthcheck "${image}")  # only exported, never started
  "${engine}" export "${cid}" | tar -C "${rootfs}" -x
  "${engine}" rm "${cid}" >/dev/null
  local m
  for m in proc dev; do
    mount --bind "/${m}" "${rootfs}/${m}"
    mounted+=("${rootfs}/${m}")
  done
  log "image exported to ${rootfs}; hub runs there as user ringhub (no seccomp on this path)"
  chroot --userspec=ringhub:ringhub "${rootfs}" /usr/local/bin/ringhub --bind 127.0.0.1 --relay-port 0 \
    --line-port 0 --admin-port 0 --max-connections 5000 >"${workdir}/hub.log" 2>&1 &
  hub_pid=$!
  wait_until_ready "cat ${workdir}/hub.log"
  local ready
  ready=$(grep 'ringhub ready' "${workdir}/hub.log")
  relay_port=$(sed -E 's/.*relay on [^ ]*:([0-9]+),.*/\1/' <<<"${ready}")
  line_port=$(sed -E 's/.*line on [^ ]*:([0-9]+),.*/\1/' <<<"${ready}")
  admin_port=$(sed -E 's|.*metrics on http://[^ ]*:([0-9]+)/metrics.*|\1|' <<<"${ready}")
  local uid image_uid
  uid=$(ps -o uid= -p "${hub_pid}" | tr -d ' ')
  image_uid=$(awk -F: '$1 == "ringhub" {print $3}' "${rootfs}/etc/passwd")
  [[ ${uid} == "${image_uid}" && ${uid} != 0 ]] || die "the hub runs as uid ${uid}, not ringhub (${image_uid})"
  log "hub pid ${hub_pid} runs as uid ${uid}, the image's user ringhub"
}

# The image's health check command; on the chroot path with the hub's free admin port for 7402.
probe_health_in_image() {
  if [[ ${path} == chroot ]]; then
    chroot --userspec=ringhub:ringhub "${rootfs}" ringhub-admin-get "${admin_port}" /healthz
  else
    "${engine}" exec "${container_id}" ringhub-admin-get 7402 /healthz
  fi
}

stop_hub() {
  local start_ms
  start_ms=$(now_ms)
  local code=0
  if [[ ${path} == chroot ]]; then
    kill -TERM "${hub_pid}"
    wait "${hub_pid}" || code=$?
    hub_pid=
  else
    "${engine}" stop --time 10 "${container_id}" >/dev/null
    code=$("${engine}" inspect "${container_id}" --format '{{.State.ExitCode}}')
    "${engine}" rm "${container_id}" >/dev/null
    container_id=
  fi
  local took=$(($(now_ms) - start_ms))
  log "SIGTERM: hub exited with ${code} after ${took} ms (grace ${grace_ms} ms)"
  ((code == 0)) || die "the hub did not exit cleanly on SIGTERM"
  ((took <= grace_ms + exit_margin_ms)) || die "the hub took longer than its grace to stop"
}

# --- checks shared by both paths ---------------------------------------------------------------------

now_ms() { date +%s%3N; }

# `show_log` is a command printing the hub's log so far.
wait_until_ready() {
  local show_log=$1 i
  for ((i = 0; i < ready_tries; i++)); do
    ${show_log} 2>&1 | grep -q 'ringhub ready' && return 0
    sleep 0.1
  done
  ${show_log} >&2 || true
  die "the hub did not become ready"
}

check_health() {
  local body
  body=$(probe_health_in_image) || die "/healthz probe inside the image failed"
  [[ ${body} == ok ]] || die "/healthz answered '${body}'"
  log "/healthz (the image's HEALTHCHECK command): ${body}"
}

check_relay() {
  local out=${workdir}/listen.out
  timeout 10 "${bin}/ringhub-client" --hub "127.0.0.1:${relay_port}" listen --count 1 >"${out}" &
  local listener=$! i
  for ((i = 0; i < 100; i++)); do
    grep -q 'listening as id' "${out}" && break
    sleep 0.1
  done
  local id
  id=$(sed -n 's/^listening as id //p' "${out}")
  [[ -n ${id} ]] || die "the listener got no id"
  "${bin}/ringhub-client" --hub "127.0.0.1:${relay_port}" relay --to "${id}" --body container-hello
  wait "${listener}" || die "the listener did not get the delivery"
  grep -q ': container-hello$' "${out}" || die "wrong delivery: $(cat "${out}")"
  log "relay: $(tail -n 1 "${out}")"
}

check_line() {
  "${bin}/ringhub-client" --hub "127.0.0.1:${line_port}" line --message container-line --timeout 2000 \
    >"${workdir}/line.out" || die "line round trip failed: $(cat "${workdir}/line.out")"
  log "line: $(tr '\n' ' ' <"${workdir}/line.out")"
}

check_stress() {
  local common=(--admin "127.0.0.1:${admin_port}" --timeout 5000 --deadline 40)
  [[ -n ${hub_pid} ]] && common+=(--hub-pid "${hub_pid}")
  log "stress: line mode, 2000 clients"
  "${bin}/ringhub-stress" --mode line --clients 2000 --ramp 2 --ok-delay '0:50%,1ms-20ms:50%' \
    --hub "127.0.0.1:${line_port}" "${common[@]}" || die "line stress failed"
  log "stress: relay mode, 500 clients"
  "${bin}/ringhub-stress" --mode relay --clients 500 --ramp 1 --senders 0.05 --relays 2 \
    --hub "127.0.0.1:${relay_port}" "${common[@]}" || die "relay stress failed"
}

# Every client is gone: no connection, pending message, queued byte or held buffer beyond the pool.
check_zero_state() {
  local metrics
  metrics=$(bash deploy/ringhub-admin-get.sh "${admin_port}" /metrics) || die "/metrics failed"
  local gauge value
  for gauge in 'ringhub_connections{protocol="relay"}' 'ringhub_connections{protocol="line"}' \
    ringhub_line_pending_messages ringhub_outbound_queued_bytes; do
    value=$(awk -v g="${gauge}" '$1 == g {print $2}' <<<"${metrics}")
    [[ ${value} == 0 ]] || die "${gauge} is '${value}' after every client left"
  done
  log "zero state through /metrics: connections, pending line messages and queued bytes all 0"
}

main() {
  parse_args "$@"
  [[ ${EUID} -eq 0 ]] || die "run as root (image build, and the chroot path's mounts)"
  build_host_tools
  pick_engine
  ensure_base_image
  build_image
  check_image_config
  choose_path
  if [[ ${path} == chroot ]]; then
    start_chroot_hub
  else
    start_container
  fi
  log "hub ports: relay ${relay_port}, line ${line_port}, admin ${admin_port}"
  check_health
  check_relay
  check_line
  check_stress
  check_zero_state
  stop_hub
  log "PASSED on the ${path} path; image ${image} is $(image_size)"
}

main "$@"
