#!/usr/bin/env bash
# Installs what is missing, builds the release preset and starts the hub (127.0.0.1:7400 unless flags
# say otherwise). Flags are passed to ringhub: bash scripts/run-hub.sh --relay-port 7500
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release
exec build/release/bin/ringhub "$@"
