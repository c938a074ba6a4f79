#!/usr/bin/env bash
# Builds and tests ringhub on Debian 13 (trixie) from a Debian 12 host: debootstraps a minbase root
# (kept and reused), copies the working tree in, runs scripts/test.sh inside a chroot. Not in CI (10+ min).
#   sudo bash scripts/check-debian13.sh [ROOT_DIR]    # default /var/tmp/ringhub-trixie
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly suite=trixie
readonly root=${1:-/var/tmp/ringhub-trixie}
readonly src_in_root=/src/ringhub   # where the tree is copied inside the chroot
mounted=()                          # mount points to undo, in mount order

if [[ ${EUID} -ne 0 ]]; then
  echo "check-debian13: run as root (debootstrap, chroot and mount need it)" >&2
  exit 1
fi

# The mirror this host's apt already uses, read at run time so no host name lives in the repository.
apt_mirror() {
  local uri=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [[ -z ${uri} && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
  fi
  if [[ -z ${uri} ]]; then
    echo "check-debian13: no Debian mirror found in apt's configuration" >&2
    exit 1
  fi
  echo "${uri}"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
}

# A root that finished debootstrap has its marker; a half-made one is started again.
ensure_root() {
  local marker="${root}/.ringhub-debootstrap-done"
  [[ -f ${marker} ]] && return
  rm -rf "${root}"
  echo "== debootstrap ${suite} minbase into ${root}"
  debootstrap --variant=minbase "${suite}" "${root}" "$(apt_mirror)"
  touch "${marker}"
}

mount_into_root() {
  local what=$1 where="${root}$2"
  shift 2
  mkdir -p "${where}"
  mount "$@" "${what}" "${where}"
  mounted+=("${where}")
}

unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" || umount -l "${mounted[i]}" || echo "check-debian13: cannot unmount ${mounted[i]}" >&2
  done
  mounted=()
}

# The working tree as it is (committed or not), without build output or git metadata.
copy_tree() {
  rm -rf "${root}${src_in_root}"
  mkdir -p "${root}${src_in_root}"
  tar --exclude=./build --exclude=./.git --exclude=./.cache -cf - . | tar -xf - -C "${root}${src_in_root}"
}

ensure_debootstrap
ensure_root
copy_tree
cp /etc/resolv.conf "${root}/etc/resolv.conf"
trap unmount_all EXIT
mount_into_root proc /proc -t proc
mount_into_root sysfs /sys -t sysfs
mount_into_root /dev /dev --bind
mount_into_root /dev/pts /dev/pts --bind

echo "== scripts/test.sh in Debian ${suite} ($(cat "${root}/etc/debian_version"))"
start=${SECONDS}
status=0
chroot "${root}" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  bash -c "cd ${src_in_root} && bash scripts/test.sh" || status=$?
if ((status == 0)); then
  echo "check-debian13: PASS on Debian ${suite} in $((SECONDS - start)) s"
else
  echo "check-debian13: FAIL (exit ${status}) on Debian ${suite} after $((SECONDS - start)) s" >&2
fi
exit "${status}"
