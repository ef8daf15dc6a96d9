#!/usr/bin/env bash
# Runs the try_acquire benchmark; prints "BENCH rust try_acquire_ns=<x>
# floor_ns=<x> refused_ns=<x>", then the thread rows (THREADS and THREAD_ROW
# lines: admitted and refused from 1, 2 and 4 threads, on one model and on a
# model each).
# Expects RATETRACK_LIBRARY to name the built libratetrack.so.0.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-bench.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
export PATH="$HOME/.cargo/bin:$PATH"
cargo bench --locked --bench try_acquire
