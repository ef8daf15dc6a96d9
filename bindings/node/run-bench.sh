#!/usr/bin/env bash
# Runs the Node.js benchmark; prints "BENCH node try_acquire_ns=<float>".
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-bench.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
[[ -d node_modules/koffi ]] || npm ci --no-audit --no-fund --loglevel=error
node bench/bench.js
