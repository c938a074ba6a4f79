#!/usr/bin/env bash
# Writes deploy/seccomp-ringhub.json: a container runtime's default seccomp profile plus exactly the three
# io_uring syscalls, which Docker 25+, containerd and podman leave out of their defaults. Run it to refresh:
#   bash deploy/make-seccomp-profile.sh [BASE_PROFILE]   # default base: /usr/share/containers/seccomp.json
# The default base is podman's profile as Debian ships it (package golang-github-containers-common, from
# containers/common pkg/seccomp/seccomp.json); moby/moby's profiles/seccomp/default.json (Docker's) has
# the same format and works as BASE_PROFILE too. Docker and podman both accept the result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

base=${1:-/usr/share/containers/seccomp.json}
out=seccomp-ringhub.json
if [[ ! -r ${base} ]]; then
  echo "make-seccomp-profile: cannot read ${base}; on Debian: apt-get install golang-github-containers-common" >&2
  exit 1
fi

python3 - "${base}" "${out}" <<'PY'
import json
import sys

base_path, out_path = sys.argv[1], sys.argv[2]
IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]

with open(base_path) as f:
    profile = json.load(f)
allowed = {name for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
           and not rule.get("includes") for name in rule["names"]}
already = sorted(allowed & set(IO_URING))
if already:
    print(f"make-seccomp-profile: {base_path} already allows {already}; adding the rest", file=sys.stderr)
profile["syscalls"].append({
    "names": [name for name in IO_URING if name not in allowed],
    "action": "SCMP_ACT_ALLOW",
    "comment": "ringhub: io_uring, left out of the runtime defaults (moby/moby#46762, containerd/containerd#9320)",
})
with open(out_path, "w") as f:
    json.dump(profile, f, indent="\t")
    f.write("\n")
print(f"make-seccomp-profile: wrote {out_path} from {base_path}")
PY
