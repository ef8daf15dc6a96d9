#!/usr/bin/env bash
# Runs the Node.js benchmark; prints "BENCH node try_acquire_ns=<float>
# floor_ns=<float> refused_ns=<float>", then the thread rows of
# bench/threads.js (THREADS and THREAD_ROW lines: admitted and refused from 1,
# 2 and 4 worker threads, on one model and on a model each).
# NODE / NPM pick another toolchain, as for run-tests.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-bench.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
NODE=${NODE:-node}
if [[ $NODE == */* ]]; then
  export PATH="$(cd "$(dirname "$NODE")" && pwd):$PATH"
  if [[ -z ${NPM:-} && -x $(dirname "$NODE")/npm ]]; then NPM=$(dirname "$NODE")/npm; fi
fi
NPM=${NPM:-npm}
[[ -d node_modules/koffi ]] || "$NPM" ci --no-audit --no-fund --loglevel=error
"$NODE" bench/bench.js
"$NODE" bench/threads.js
