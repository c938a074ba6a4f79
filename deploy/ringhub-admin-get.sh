#!/usr/bin/env bash
# GET PATH from the hub's admin port on 127.0.0.1 with bash's /dev/tcp alone: the image's HEALTHCHECK
# (installed there as ringhub-admin-get) and scripts/container-test.sh's /metrics reads from the host.
#   bash deploy/ringhub-admin-get.sh 7402 /healthz    # prints the body; exit 1 unless HTTP 200
set -euo pipefail

port=${1:?usage: ringhub-admin-get PORT PATH}
path=${2:?usage: ringhub-admin-get PORT PATH}

exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\n\r\n' "${path}" >&3
IFS= read -r status <&3
while IFS= read -r header <&3 && [[ ${header} != $'\r' ]]; do :; done  # the admin server closes after
cat <&3
[[ ${status} == *' 200 '* ]] || {
  echo "ringhub-admin-get: ${path}: ${status%$'\r'}" >&2
  exit 1
}
