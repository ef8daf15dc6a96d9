#!/usr/bin/env bash
# Runs the try_acquire benchmark (bench/bench.py) on both of the binding's
# paths, ratetrack._fast and ctypes; prints "BENCH python try_acquire_ns=...".
# Usage: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 [PYTHON=python3.X] ./run-bench.sh [calls]
# The package is imported from src/, in a throwaway venv (no pip, no
# dependencies) whose ratetrack._fast build-fast.sh compiles for $PYTHON;
# nothing is written into the checkout. RATETRACK_PYTHON_FAST=0 measures
# the ctypes path only (no compiler needed).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-bench.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratetrack-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv --without-pip "$tmp/venv"
site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/src" > "$site/ratetrack-src.pth"
if [[ "${RATETRACK_PYTHON_FAST:-}" != 0 ]]; then
  ./build-fast.sh "$tmp/venv/bin/python" "$tmp/fast" "$site"
fi
"$tmp/venv/bin/python" bench/bench.py "$@"
