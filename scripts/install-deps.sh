#!/usr/bin/env bash
# Installs what building and testing libratetrack needs on Debian 12 (or a
# recent Ubuntu): compilers, CMake, Abseil, GoogleTest, Google Benchmark,
# nlohmann-json; with --bindings also what the language bindings need (Go,
# Rust, Node.js, Python venv) where missing. Idempotent; needs root or sudo
# only when something is missing.
set -euo pipefail

want=(build-essential cmake ninja-build pkg-config binutils
      libabsl-dev libgtest-dev libgmock-dev googletest libbenchmark-dev nlohmann-json3-dev
      libhiredis-dev libssl-dev openssl redis-server redis-sentinel redis-tools curl ca-certificates
      prometheus)  # promtool: the metrics tests check the exposition with it
bindings=0
for arg in "$@"; do
  case "$arg" in
    --bindings) bindings=1 ;;
    *) echo "usage: $0 [--bindings]" >&2; exit 64 ;;
  esac
done
if [ "$bindings" = 1 ]; then
  command -v go >/dev/null || want+=(golang-go)
  command -v cargo >/dev/null || want+=(cargo)
  command -v node >/dev/null || want+=(nodejs)
  command -v npm >/dev/null || want+=(npm)
  command -v python3 >/dev/null || want+=(python3)
  python3 -m venv --help >/dev/null 2>&1 || want+=(python3-venv)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
