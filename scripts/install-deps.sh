#!/usr/bin/env bash
# Installs what building and testing libratetrack needs on Debian 12 (or a
# recent Ubuntu): compilers, CMake, Abseil, GoogleTest, Google Benchmark,
# nlohmann-json; with --bindings also what the language bindings need (Go,
# Rust, Node.js, Python venv and headers) where missing; with --fuzz, clang
# and its libFuzzer and sanitizer runtimes (scripts/fuzz.sh). Idempotent;
# needs root or sudo only when something is missing. apt retries a failed
# download (Acquire::Retries) before it gives up.
set -euo pipefail

want=(build-essential cmake ninja-build pkg-config binutils
      libabsl-dev libgtest-dev libgmock-dev googletest libbenchmark-dev nlohmann-json3-dev
      libhiredis-dev libssl-dev openssl redis-server redis-sentinel redis-tools curl ca-certificates
      file        # cpack: the .deb generator reads the binaries with file(1)
      git         # the wheel test checks that a build writes nothing into the checkout
      prometheus)  # promtool: the metrics tests check the exposition with it
bindings=0 fuzz=0
for arg in "$@"; do
  case "$arg" in
    --bindings) bindings=1 ;;
    --fuzz) fuzz=1 ;;
    *) echo "usage: $0 [--bindings] [--fuzz]" >&2; exit 64 ;;
  esac
done
if [ "$fuzz" = 1 ]; then
  want+=(clang)
  # libFuzzer and the sanitizers' runtimes: clang only recommends them, and
  # their package is named after clang's major version.
  if command -v clang >/dev/null; then
    want+=("libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev")
  else
    want+=(libclang-rt-dev)  # Debian's default clang's (clang-14 on Debian 12)
  fi
fi
if [ "$bindings" = 1 ]; then
  command -v go >/dev/null || want+=(golang-go)
  command -v cargo >/dev/null || want+=(cargo)
  command -v node >/dev/null || want+=(nodejs)
  command -v npm >/dev/null || want+=(npm)
  command -v python3 >/dev/null || want+=(python3)
  python3 -m venv --help >/dev/null 2>&1 || want+=(python3-venv)
  # Python.h: the Python package compiles its extension module ratetrack._fast
  python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null ||
    want+=(python3-dev)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Valkey 8 (the Redis suite runs against it too: scripts/test.sh's valkey
# suite): on Debian 12 from bookworm-backports, for these two packages only
# (backports are pinned at 100: nothing else is taken from there).
backports=()
for p in valkey-server valkey-sentinel; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || backports+=("$p")
done
[ ${#missing[@]} -eq 0 ] && [ ${#backports[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "installing: ${missing[*]} ${backports[*]}"
bp_source=/etc/apt/sources.list.d/bookworm-backports.sources
if [ ${#backports[@]} -gt 0 ] && grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null &&
   ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
    'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
    $sudo tee "$bp_source" > /dev/null
fi
apt=(apt-get -o Acquire::Retries=5)
$sudo "${apt[@]}" update -qq
[ ${#missing[@]} -eq 0 ] ||
  $sudo env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ ${#backports[@]} -gt 0 ]; then
  if apt-cache policy valkey-server 2>/dev/null | grep -q bookworm-backports; then
    $sudo env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends \
      -t bookworm-backports "${backports[@]}" >/dev/null
  else
    # Elsewhere (a recent Ubuntu or Debian has Valkey in its own release).
    $sudo env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends \
      "${backports[@]}" >/dev/null || echo "install-deps.sh: no Valkey here (the valkey suite will fail)" >&2
  fi
fi
