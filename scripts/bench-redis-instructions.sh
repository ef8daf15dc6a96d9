#!/usr/bin/env bash
# What one decision costs Redis, counted rather than timed: redis-server runs
# under callgrind while bench_redis makes rt_try_acquire calls (one process,
# one thread, the model's four windows), then plain INCR calls through the
# same harness (--raw-incr), then rt_try_acquire from 4 threads on 2 connections (merged
# decisions, per decision); the figures are Redis's user-space instructions
# per call (the kernel's share of reading and writing, the same for both, is
# not counted). Instruction counts barely move with the machine's load, so
# this is the figure to compare a change of the script or the client by on a
# shared machine, where throughput drifts by tens of percent. Figures only.
#
#   scripts/bench-redis-instructions.sh [SECONDS]   (default 3 per measurement)
#   RT_BENCH_NO_BUILD=1 ...                        (measure build/ as it is)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-3}
for tool in redis-server redis-cli valgrind callgrind_control; do
  command -v "$tool" > /dev/null || { echo "bench-redis-instructions.sh: $tool not found (apt-get install redis-server redis-tools valgrind)" >&2; exit 1; }
done
if [ "${RT_BENCH_NO_BUILD:-0}" != 1 ]; then
  [ -x build/benchmarks/bench_redis ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build build --target bench_redis ratetrack > /dev/null
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$dir/out.%p" redis-server --port "$port" \
  --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" > "$dir/log" 2>&1 &
server=$!
cleanup() { kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 200); do
  [ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] && break
  sleep 0.1
done
[ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] || { echo "bench-redis-instructions.sh: redis-server did not start" >&2; exit 1; }
url="redis://127.0.0.1:$port/0?prefix=rtbench&timeout_ms=2000&on_error=closed"

# Instructions Redis executed while `bench_redis ARGS` ran, per call.
measure() {
  callgrind_control -z "$server" > /dev/null 2>&1
  local calls
  calls=$(build/benchmarks/bench_redis --url "$url" -s "$secs" "$@" --csv | cut -d, -f8)
  callgrind_control -d "$server" > /dev/null 2>&1
  # The dump is the newest file; its "summary:" line is the total.
  local dump
  dump=$(ls -t "$dir"/out.* | head -1)
  local ir
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  python3 -c "import sys; ir, calls = int(sys.argv[1]), int(sys.argv[2]); print(f'{ir / calls:.0f} {calls}')" "$ir" "$calls"
}
echo "redis-server $(redis-server --version | cut -d' ' -f3) under callgrind; ${secs} s per measurement"
# Warm up: connections, the script, the model's state.
build/benchmarks/bench_redis --url "$url" -s 1 > /dev/null
ta=$(measure)
incr=$(measure --raw-incr)
# Four threads on two connections (connections=2): queued decisions merge,
# so the figure is per decision, and how many a script call carries depends
# on timing (shown; Redis's own count of EVALSHA calls).
redis-cli -p "$port" config resetstat > /dev/null
merged=$(url="$url&connections=2" measure -t 4)
evalsha=$(redis-cli -p "$port" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\).*/\1/p')
read -r ta_ir ta_calls <<< "$ta"
read -r incr_ir incr_calls <<< "$incr"
read -r merged_ir merged_calls <<< "$merged"
printf '%-34s %12s %8s\n' "call" "instr/call" "calls"
printf '%-34s %12s %8s\n' "INCR (bench_redis)" "$incr_ir" "$incr_calls"
printf '%-34s %12s %8s\n' "rt_try_acquire (1 thread)" "$ta_ir" "$ta_calls"
printf '%-34s %12s %8s\n' "rt_try_acquire (4 threads, 2 conns)" "$merged_ir" "$merged_calls"
python3 -c "import sys; print(f'rt_try_acquire / INCR: {float(sys.argv[1]) / float(sys.argv[2]):.2f} (1 thread), {float(sys.argv[3]) / float(sys.argv[2]):.2f} (4 threads: {int(sys.argv[4]) / max(int(sys.argv[5] or 1), 1):.2f} decisions per script call)')" "$ta_ir" "$incr_ir" "$merged_ir" "$merged_calls" "${evalsha:-0}"
