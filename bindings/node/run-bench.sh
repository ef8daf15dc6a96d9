#!/usr/bin/env bash
# Runs the Node.js benchmark; prints "BENCH node try_acquire_ns=<float>".
set -euo pipefail

if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
  echo "run-bench.sh: set RATETRACK_LIBRARY to the path of libratetrack.so.0" >&2
  exit 2
fi
# A relative path is taken from the caller's directory, before the cd below.
[[ "$RATETRACK_LIBRARY" == /* ]] || RATETRACK_LIBRARY="$PWD/$RATETRACK_LIBRARY"
export RATETRACK_LIBRARY
cd "$(dirname "${BASH_SOURCE[0]}")"
[[ -d node_modules/koffi ]] || npm ci --no-audit --no-fund --loglevel=error
node bench/bench.js
