#!/usr/bin/env bash
# The small version of the 100k-client run, for ctest: starts ringhub on free ports, runs ringhub-stress
# in line mode (2000 clients) and relay mode (500 clients) against it, and fails if either fails.
#   bash perf/stress/stress_smoke.sh build/release/bin/ringhub build/release/bin/ringhub-stress
# Exits 77 (ctest: skipped) where the hub cannot start io_uring.
set -euo pipefail

hub_bin=$1
stress_bin=$2
smoke_name=stress_smoke
source "$(dirname "${BASH_SOURCE[0]}")/../smoke_hub.sh"
start_smoke_hub "$hub_bin" --max-connections 5000

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
