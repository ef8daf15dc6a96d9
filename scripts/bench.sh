#!/usr/bin/env bash
# Prints the benchmark figures as ratios to references measured in the same
# run: the C API next to a mutex-guarded one-limit token bucket (Google
# Benchmark, median of repetitions), the shared-memory backend with 1 and 2
# processes next to the in-process tracker (bench_shm_procs), and each
# binding's try_acquire next to the same call made from C. Figures, not
# tests: nothing here can fail on a slow machine.
#
#   scripts/bench.sh            core and every binding
#   scripts/bench.sh core       core only (bench_core and bench_shm_procs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build --target bench_core bench_shm_procs ratetrack > /dev/null
what=${1:-all}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
json=$(mktemp); trap 'rm -f "$json"' EXIT
build/benchmarks/bench_core --benchmark_repetitions=10 --benchmark_min_time=0.1 \
  --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true --benchmark_format=json > "$json" 2>/dev/null
python3 - "$json" <<'PY'
import json, sys
rows = {b["run_name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
# The references first, then every call next to the reference of its case
# (same threads and sharing), in a fixed order.
ref = {name.split("/", 1)[1]: b["real_time"] for name, b in rows.items()
       if name.startswith("BM_Reference") and "/" in name}
print(f"\n{'benchmark (median of 10, interleaved)':58} {'ns/call':>8} {'x ref':>6}")
for name in sorted(rows, key=lambda n: (not n.startswith("BM_Reference"), n.startswith("BM_clock"), n)):
    t = rows[name]["real_time"]
    key = name.split("/", 1)[1] if "/" in name else ""
    r = ref.get(key)
    ratio = f"{t / r:6.2f}" if r and not name.startswith("BM_Reference") else "     -"
    print(f"{name:58} {t:8.1f} {ratio}")
c = rows["BM_rt_try_acquire/separate:0/real_time/threads:1"]["real_time"]
shm = rows.get("BM_rt_try_acquire_shm/separate:0/real_time/threads:1")
if shm:
    print(f"shm / in-process try_acquire, 1 thread: {shm['real_time'] / c:.2f}")
open("/tmp/rt-bench-c-ns", "w").write(str(c))
PY

# The shm backend with processes (fork) next to threads and the reference.
build/benchmarks/bench_shm_procs || echo "(bench_shm_procs failed)"
[ "$what" = core ] && exit 0

c_ns=$(cat /tmp/rt-bench-c-ns)
lib="$PWD/build/libratetrack.so.0"
printf "\n%-10s %12s %10s\n" "binding" "try_acquire" "x C call"
printf "%-10s %9.1f ns %10s\n" "C" "$c_ns" "1.00"
for lang in go rust node python; do
  line=$(RATETRACK_LIBRARY="$lib" "bindings/$lang/run-bench.sh" 2>/dev/null | grep -m1 '^BENCH ' || true)
  v=$(echo "$line" | sed -n 's/.*try_acquire_ns=\([0-9.]*\).*/\1/p')
  if [ -n "$v" ]; then
    printf "%-10s %9.1f ns %10.2f\n" "$lang" "$v" "$(python3 -c "print($v / $c_ns)")"
  else
    printf "%-10s %12s\n" "$lang" "(failed)"
  fi
done
