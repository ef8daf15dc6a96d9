#!/usr/bin/env bash
# Runs the try_acquire benchmark; prints "BENCH rust try_acquire_ns=<x>".
# Expects RATETRACK_LIBRARY to name the built libratetrack.so.0.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-bench.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
export PATH="$HOME/.cargo/bin:$PATH"
cargo bench --locked --bench try_acquire
