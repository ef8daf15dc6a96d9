#!/usr/bin/env bash
# Builds libratetrack and runs the demo:
#  1. the seed's scenario, in-process: a main agent and two tools, in threads,
#     share gpt-4o-mini's 500 requests per minute through the one global tracker;
#  2. the same idea across processes: agents in C, Python and Node.js, as
#     three processes, spend one budget through the shared-memory backend
#     (RATETRACK_BACKEND=shm:NAME, no code change).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh --bindings
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build --target seed_scenario shm_agent >> build.log 2>&1 || { cat build.log; exit 1; }
rm -f build.log
echo "=== 1. one process, one global tracker (in-process backend)"
echo
build/examples/seed_scenario
echo
echo "=== 2. three languages, three processes, one budget (shm: backend)"
echo
exec scripts/demo-shm.sh
