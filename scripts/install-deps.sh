#!/usr/bin/env bash
# Installs what ringhub needs on Debian 12 (bookworm) or 13 (trixie), and only what is missing, so it is
# cheap to run before every build. Run as root:
#   bash scripts/install-deps.sh            # toolchain, libraries, test and lint tools (build machines, CI)
#   bash scripts/install-deps.sh --runtime  # only the shared libraries the built binaries load (images)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Build dependencies. "a|b" means either package will do.
build_packages=(
  "build-essential|g++"
  cmake ninja-build pkg-config git
  liburing-dev libboost-dev libcli11-dev libfmt-dev libspdlog-dev libsodium-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  clang-format clang-tidy
  clang libclang-rt-dev  # the fuzz preset: clang++ and libFuzzer (libclang_rt.fuzzer, in libclang-rt-14-dev on Debian 12)
  python3  # perf/attack/attack.py, run by ctest (attack_smoke)
  golang-go  # clients/go: its tests run under ctest (Go 1.19 on Debian 12, newer on 13)
)

# The -dev packages whose shared library the binaries link, with the name stem of that library's
# package. Its full name differs between releases (libfmt9 / libfmt10, libspdlog1.10 / libspdlog1.15),
# so it is read from the -dev package's dependencies, which always name the matching one.
runtime_libs=(
  "liburing-dev liburing[0-9]"
  "libfmt-dev libfmt[0-9]"
  "libspdlog-dev libspdlog1"
  "libsodium-dev libsodium[0-9]"  # libsodium23 on Debian 12 and 13
)

usage() {
  echo "usage: $0 [--runtime]" >&2
  exit 2
}

is_installed() {
  dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# True if some installed package's name matches the glob (dpkg-query accepts patterns).
is_installed_glob() {
  dpkg-query -W -f='${Status} ${Package}\n' "$1" 2>/dev/null | grep -q '^install ok installed '
}

need_root() {
  if [[ ${EUID} -ne 0 ]]; then
    echo "install-deps: missing packages: $*; run this script as root to install them" >&2
    exit 1
  fi
}

apt_install() {
  need_root "$@"
  echo "install-deps: installing: $*"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$@"
}

install_build_deps() {
  local missing=() entry alt found
  for entry in "${build_packages[@]}"; do
    found=0
    IFS='|' read -ra alts <<<"${entry}"
    for alt in "${alts[@]}"; do
      if is_installed "${alt}"; then
        found=1
        break
      fi
    done
    ((found)) || missing+=("${alts[0]}")
  done
  if ((${#missing[@]} == 0)); then
    echo "install-deps: build dependencies already installed"
    return
  fi
  apt_install "${missing[@]}"
}

# Prints the package that `dev` depends on whose name starts with `stem` (a grep pattern).
runtime_package_of() {
  local dev=$1 stem=$2
  apt-cache depends "${dev}" | sed -n "s/^ *Depends: \(${stem}[^ <>]*\)\$/\1/p" | head -n 1
}

install_runtime_deps() {
  local missing_stems=() entry dev stem pkg packages=()
  for entry in "${runtime_libs[@]}"; do
    read -r dev stem <<<"${entry}"
    is_installed_glob "${stem}*" || missing_stems+=("${entry}")
  done
  if ((${#missing_stems[@]} == 0)); then
    echo "install-deps: runtime libraries already installed"
    return
  fi
  need_root "runtime libraries of ${missing_stems[*]}"
  apt-get update -q
  for entry in "${missing_stems[@]}"; do
    read -r dev stem <<<"${entry}"
    pkg=$(runtime_package_of "${dev}" "${stem}")
    if [[ -z ${pkg} ]]; then
      echo "install-deps: cannot find the runtime library package of ${dev}" >&2
      exit 1
    fi
    packages+=("${pkg}")
  done
  echo "install-deps: installing: ${packages[*]}"
  apt-get install -y -q --no-install-recommends "${packages[@]}"
}

(($# <= 1)) || usage
case "${1-}" in
  "") install_build_deps ;;
  --runtime) install_runtime_deps ;;
  *) usage ;;
esac
