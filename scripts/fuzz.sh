#!/usr/bin/env bash
# Builds the fuzz preset and runs each libFuzzer target (tests/fuzz) for N seconds on a scratch copy of
# its seed corpus; exits non-zero if any target finds a crash or breaks an invariant. docs/testing.md,
# "Fuzzing", says how to read the output and what to do with a crash.
#   bash scripts/fuzz.sh                 # every target, 60 s each
#   bash scripts/fuzz.sh 3600 line_protocol_fuzz
# FUZZ_WORK_DIR=DIR keeps each target's grown corpus in DIR/<target> across runs (default: a temp dir,
# removed afterwards). Crash inputs are written to FUZZ_ARTIFACT_DIR (default build/fuzz/artifacts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all_targets=(client_frame_reader_fuzz frame_assembler_fuzz frame_codec_fuzz http_request_fuzz line_protocol_fuzz)
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]} > 0)) || targets=("${all_targets[@]}")
[[ ${seconds} =~ ^[0-9]+$ ]] && ((seconds > 0)) || {
  echo "usage: $0 [seconds-per-target] [target...]" >&2
  exit 2
}

# Largest input libFuzzer makes: big enough for a RELAY to 255 receivers plus cut table and body.
max_len=4096
# Hard stop per target: libFuzzer's own -max_total_time plus slack for loading the corpus and exiting.
slack_seconds=60

artifact_dir=${FUZZ_ARTIFACT_DIR:-build/fuzz/artifacts}
scratch=""
if [[ -n ${FUZZ_WORK_DIR-} ]]; then
  work_dir=${FUZZ_WORK_DIR}
else
  scratch=$(mktemp -d)
  work_dir=${scratch}
  trap 'rm -rf "${scratch}"' EXIT
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
mkdir -p "${artifact_dir}"

failed=()
summary=()
for target in "${targets[@]}"; do
  binary=build/fuzz/bin/${target}
  seeds=tests/fuzz/corpus/${target}
  if [[ ! -x ${binary} || ! -d ${seeds} ]]; then
    echo "fuzz: unknown target ${target} (known: ${all_targets[*]})" >&2
    exit 2
  fi
  corpus=${work_dir}/${target}
  log=${work_dir}/${target}.log
  mkdir -p "${corpus}"
  echo "== fuzz ${target}: ${seconds} s"
  # New inputs go to the first directory (scratch); the seed corpus is only read.
  status=0
  timeout --signal=KILL $((seconds + slack_seconds)) \
    "${binary}" -max_total_time="${seconds}" -max_len="${max_len}" -print_final_stats=1 \
    -artifact_prefix="${artifact_dir}/${target}-" "${corpus}" "${seeds}" >"${log}" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}")
  summary+=("${target}: ${execs:-?} execs in ${seconds} s, corpus $(find "${corpus}" -type f | wc -l) inputs, exit ${status}")
  if ((status != 0)); then
    tail -n 40 "${log}"
    echo "fuzz: ${target} FAILED (exit ${status}); crash input in ${artifact_dir}/${target}-*"
    failed+=("${target}")
  fi
done

echo "== fuzz summary"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzz: failing targets: ${failed[*]}"
  exit 1
fi
