#!/usr/bin/env bash
# Prints the benchmark figures as ratios to references measured in the same
# run: the C API next to a mutex-guarded one-limit token bucket (Google
# Benchmark, median of repetitions), a refusal next to an admission (1, 2
# and 4 threads, on one model and on one model per thread; each ratio the
# median of the per-repetition ratios, with their range), the shared-memory backend with 1 and 2
# processes next to the in-process tracker (bench_shm_procs), and each
# binding's try_acquire next to the same call made from C and next to its
# FFI's floor (an empty C call through the same mechanism). Figures, not
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
  --benchmark_format=json > "$json" 2>/dev/null
python3 - "$json" <<'PY'
import json, statistics, sys
all_rows = json.load(open(sys.argv[1]))["benchmarks"]
rows = {b["run_name"]: b for b in all_rows if b.get("aggregate_name") == "median"}
reps, cpu = {}, {}  # run_name -> real (cpu) time of each repetition, in order
for b in sorted((b for b in all_rows if b.get("run_type") == "iteration"),
                key=lambda b: b.get("repetition_index", 0)):
    reps.setdefault(b["run_name"], []).append(b["real_time"])
    cpu.setdefault(b["run_name"], []).append(b["cpu_time"])
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

# A refusal next to an admission of the same case: per repetition (the
# repetitions are interleaved), then the median and range of those ratios;
# of elapsed time per call and of CPU time per call (which a preempted
# thread does not inflate).
print(f"\n{'refused / admitted (rt_try_acquire)':42} {'admit ns':>9} {'refuse ns':>9} {'ratio':>6} {'range':>10} {'cpu ratio':>9} {'range':>10}")
for backend, base in (("memory", "BM_rt_try_acquire"), ("shm", "BM_rt_try_acquire_shm")):
    for case in ("separate:0/real_time/threads:1", "separate:0/real_time/threads:2",
                 "separate:0/real_time/threads:4", "separate:1/real_time/threads:2",
                 "separate:1/real_time/threads:4"):
        a, r = f"{base}/{case}", f"{base}_refused/{case}"
        if a not in reps or r not in reps:
            continue
        ratios = [y / x for x, y in zip(reps[a], reps[r])]
        cpu_ratios = [y / x for x, y in zip(cpu[a], cpu[r])]
        threads = case.rsplit(":", 1)[1]
        models = "one model per thread" if case.startswith("separate:1") else "one model"
        label = f"{backend}, {threads} thread{'s' if threads != '1' else ''}, {models}"
        print(f"{label:42} {statistics.median(reps[a]):9.1f} {statistics.median(reps[r]):9.1f} "
              f"{statistics.median(ratios):6.2f} {min(ratios):5.2f}-{max(ratios):4.2f} "
              f"{statistics.median(cpu_ratios):9.2f} {min(cpu_ratios):5.2f}-{max(cpu_ratios):4.2f}")
PY

# The shm backend with processes (fork) next to threads and the reference.
build/benchmarks/bench_shm_procs || echo "(bench_shm_procs failed)"
[ "$what" = core ] && exit 0

c_ns=$(cat /tmp/rt-bench-c-ns)
lib="$PWD/build/libratetrack.so.0"
# floor: the same binding's call of rt_version_number() (a C function that
# only returns a constant) through the same mechanism: what the FFI itself costs.
printf "\n%-10s %12s %10s %12s %10s %12s %10s\n" "binding" "try_acquire" "x C call" "FFI floor" "x floor" "refused" "x admitted"
printf "%-10s %9.1f ns %10s\n" "C" "$c_ns" "1.00"
for lang in go rust node python; do
  line=$(RATETRACK_LIBRARY="$lib" "bindings/$lang/run-bench.sh" 2>/dev/null | grep -m1 '^BENCH ' || true)
  v=$(echo "$line" | sed -n 's/.*try_acquire_ns=\([0-9.]*\).*/\1/p')
  f=$(echo "$line" | sed -n 's/.*floor_ns=\([0-9.]*\).*/\1/p')
  r=$(echo "$line" | sed -n 's/.*refused_ns=\([0-9.]*\).*/\1/p')
  if [ -n "$v" ] && [ -n "$f" ] && [ -n "$r" ]; then
    printf "%-10s %9.1f ns %10.2f %9.1f ns %10.2f %9.1f ns %10.2f\n" "$lang" "$v" "$(python3 -c "print($v / $c_ns)")" \
      "$f" "$(python3 -c "print($v / $f)")" "$r" "$(python3 -c "print($r / $v)")"
  elif [ -n "$v" ] && [ -n "$f" ]; then
    printf "%-10s %9.1f ns %10.2f %9.1f ns %10.2f\n" "$lang" "$v" "$(python3 -c "print($v / $c_ns)")" \
      "$f" "$(python3 -c "print($v / $f)")"
  elif [ -n "$v" ]; then
    printf "%-10s %9.1f ns %10.2f\n" "$lang" "$v" "$(python3 -c "print($v / $c_ns)")"
  else
    printf "%-10s %12s\n" "$lang" "(failed)"
  fi
done
