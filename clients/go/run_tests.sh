#!/usr/bin/env bash
# Runs the Go client module's checks against a built hub: go vet, then go test -race (the hub tests
# start their own hubs on free ports). ctest calls it (clients/go/CMakeLists.txt); by hand:
#   bash clients/go/run_tests.sh "$(command -v go)" build/release/bin/ringhub build/release/clients/go/go-home
set -euo pipefail

if (($# != 3)); then
  echo "usage: $0 GO_BINARY RINGHUB_BINARY GO_HOME_DIR" >&2
  exit 2
fi
go_bin=$1
hub_bin=$(realpath "$2")
go_home=$3

cd "$(dirname "$0")"
mkdir -p "${go_home}"
go_home=$(realpath "${go_home}")

# Caches under the build dir; no network: the module uses only the standard library.
export GOCACHE="${go_home}/cache" GOPATH="${go_home}/path" GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local
export RINGHUB_BIN="${hub_bin}"

"${go_bin}" version
"${go_bin}" vet ./...
"${go_bin}" test -race -count=1 ./...
