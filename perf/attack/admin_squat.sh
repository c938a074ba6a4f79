#!/usr/bin/env bash
# Scrape latency with sockets squatting on the admin port: starts a hub on kernel-picked ports and runs
# perf/attack/admin_squat.py against it RUNS times (default 5), one summary line per run.
#   bash perf/attack/admin_squat.sh build/release/bin/ringhub [RUNS] [admin_squat.py flags...]
set -euo pipefail

hub_bin=$1
runs=${2:-5}
shift $(($# >= 2 ? 2 : 1))
smoke_name=admin_squat
source "$(dirname "${BASH_SOURCE[0]}")/../smoke_hub.sh"
start_smoke_hub "$hub_bin" --shards 1
for _ in $(seq "$runs"); do
  python3 "$(dirname "${BASH_SOURCE[0]}")/admin_squat.py" --admin "127.0.0.1:$admin_port" "$@"
done
