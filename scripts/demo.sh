#!/usr/bin/env bash
# Builds libratetrack and runs the demo: the seed's scenario (a main agent and
# two tools, in threads, share gpt-4o-mini's 500 requests per minute through
# the one in-process global tracker).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build --target seed_scenario >> build.log 2>&1 || { cat build.log; exit 1; }
rm -f build.log
exec build/examples/seed_scenario
