#!/usr/bin/env bash
# The small version of perf/attack/attack.py, for ctest: every attack against a one-shard hub with a
# 256 MiB budget for 3 s each. Fails if the control client was not served during an attack, if the
# hub's charged memory passed the budget, or if the hub did not exit after the SIGTERM sent during the
# last attack (30 s: a liveness check, not a speed target; the time is printed). Exits 77 where the
# hub cannot start io_uring.
#   bash perf/attack/attack_smoke.sh build/release/bin/ringhub perf/attack/attack.py
set -euo pipefail

hub_bin=$1
attack_py=$2
smoke_name=attack_smoke
source "$(dirname "${BASH_SOURCE[0]}")/../smoke_hub.sh"
budget=$((256 << 20))
start_smoke_hub "$hub_bin" --shards 1 --max-memory "$budget" --shutdown-grace-ms 1000
python3 "$attack_py" --hub "127.0.0.1:$relay_port" --admin "127.0.0.1:$admin_port" --hub-pid "$hub_pid" \
  --quick --duration 3 --check-budget "$budget" --sigterm --sigterm-limit 30
