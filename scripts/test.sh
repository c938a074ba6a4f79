#!/usr/bin/env bash
# Installs what is missing, builds the release preset and runs the whole test suite. This is the
# command CI runs (via .ci/run) and the one README.md gives: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
cmake --preset release
cmake --build --preset release
ctest --preset release
