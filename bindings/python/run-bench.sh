#!/usr/bin/env bash
# Runs the try_acquire benchmark; prints "BENCH python try_acquire_ns=<float>".
# Usage: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 ./run-bench.sh
set -euo pipefail
if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
  echo "run-bench.sh: RATETRACK_LIBRARY is not set; set it to the path of libratetrack.so.0" >&2
  exit 2
fi
if [[ "$RATETRACK_LIBRARY" == */* && "$RATETRACK_LIBRARY" != /* ]]; then
  RATETRACK_LIBRARY="$(cd "$(dirname "$RATETRACK_LIBRARY")" && pwd)/$(basename "$RATETRACK_LIBRARY")"
fi
export RATETRACK_LIBRARY
cd "$(dirname "${BASH_SOURCE[0]}")"
# No install needed: the package has no dependencies, run it from the source tree.
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" bench/bench.py "$@"
