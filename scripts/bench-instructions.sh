#!/usr/bin/env bash
# Instructions per rt_try_acquire, counted by callgrind rather than timed:
# an admission and a refusal (one thread, the model's four windows), on the
# memory and shm backends. Each figure is the difference of two runs of
# bench_instructions (CALLS and 10 * CALLS + ... calls) divided by the
# difference of their call counts, so start-up and exit cancel out.
# Instruction counts barely move with the machine's load: the figure to
# compare a change of the hot path by on a shared machine. Figures only.
#
#   scripts/bench-instructions.sh [CALLS]   (default 100000)
#   RT_BENCH_NO_BUILD=1 ...                 (measure build/ as it is)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
calls=${1:-100000}
command -v valgrind > /dev/null || { echo "bench-instructions.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
if [ "${RT_BENCH_NO_BUILD:-0}" != 1 ]; then
  [ -f build/build.ninja ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build build --target bench_instructions ratetrack > /dev/null
fi
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
# Total instructions of `bench_instructions KIND N`.
total() {
  valgrind --tool=callgrind --callgrind-out-file="$dir/out" build/benchmarks/bench_instructions "$1" "$2" \
    > /dev/null 2> "$dir/log" || { cat "$dir/log" >&2; exit 1; }
  awk '/^(summary|totals):/ {print $2; exit}' "$dir/out"
}
printf "%-12s %14s\n" "call" "instructions"
for kind in admit refuse admit-shm refuse-shm; do
  small=$(total "$kind" 1000)
  big=$(total "$kind" $((calls + 1000)))
  printf "%-12s %14.1f\n" "$kind" "$(python3 -c "print(($big - $small) / $calls)")"
done
