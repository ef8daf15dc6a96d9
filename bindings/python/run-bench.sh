#!/usr/bin/env bash
# Runs the try_acquire benchmark; prints "BENCH python try_acquire_ns=<float>".
# Usage: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 ./run-bench.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-bench.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
# No install needed: the package has no dependencies, run it from the source tree.
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" bench/bench.py "$@"
