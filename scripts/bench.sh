#!/usr/bin/env bash
# Prints the benchmark figures as ratios to references measured in the same
# run: the C API next to a mutex-guarded one-limit token bucket (Google
# Benchmark, median of repetitions), a refusal next to an admission (1, 2
# and 4 threads, on one model and on one model per thread; each ratio the
# median of the per-repetition ratios, with their range), the shared-memory backend with 1 and 2
# processes next to the in-process tracker (bench_shm_procs), and each
# binding's try_acquire next to the same call made from C and next to its
# FFI's floor (an empty C call through the same mechanism), and each
# binding's refusal next to its admission at 1, 2 and 4 threads, on one
# model and on a model each (its own interleaved rounds; what a thread is
# in each language is printed with its rows). Figures, not tests: nothing
# here can fail on a slow machine.
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
json=$(mktemp); rows=$(mktemp); trap 'rm -f "$json" "$rows"' EXIT
build/benchmarks/bench_core --benchmark_repetitions=10 --benchmark_min_time=0.1 \
  --benchmark_enable_random_interleaving=true \
  --benchmark_format=json > "$json" 2>/dev/null
python3 - "$json" "$rows" <<'PY'
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
rows_out = open(sys.argv[2], "w")
rows_out.write("THREADS C: a thread is an OS thread (Google Benchmark) calling one tracker; "
               "10 repetitions interleaved at random; ns = wall time per call, all threads' calls\n")
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
        if backend == "memory":  # the in-process rows, for the table of every language
            rows_out.write(f"THREAD_ROW C threads={threads} models={'each' if case.startswith('separate:1') else 'one'} "
                           f"admitted_ns={statistics.median(reps[a]):.1f} refused_ns={statistics.median(reps[r]):.1f} "
                           f"ratio={statistics.median(ratios):.2f} ratio_min={min(ratios):.2f} ratio_max={max(ratios):.2f}\n")
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
  out=$(RATETRACK_LIBRARY="$lib" "bindings/$lang/run-bench.sh" 2>/dev/null || true)
  grep '^THREAD' <<<"$out" >> "$rows" || true
  line=$(grep -m1 '^BENCH ' <<<"$out" || true)
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

# A refusal next to an admission at 1, 2 and 4 threads, on one model and on
# a model each: C's rows (bench_core, above) and each binding's that prints
# them (THREADS / THREAD_ROW lines of its run-bench.sh).
python3 - "$rows" <<'PY'
import re, sys
notes, rows = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("THREADS "):
        lang, text = line[len("THREADS "):].split(":", 1)
        notes[lang] = text.strip()
    elif line.startswith("THREAD_ROW "):
        lang = line.split()[1]
        rows.setdefault(lang, []).append(dict(re.findall(r"(\w+)=(\S+)", line)))
print(f"\n{'refused / admitted, try_acquire':14} {'threads':>7} {'models':>14} {'admit ns':>9} {'refuse ns':>9} {'ratio':>6} {'range':>10}")
for lang in ["C", "go", "rust", "node", "python"]:
    if lang not in rows:
        print(f"{lang:14} (no thread rows)")
        continue
    for r in rows[lang]:
        models = "a model each" if r["models"] == "each" else "one model"
        print(f"{lang:14} {r['threads']:>7} {models:>14} {float(r['admitted_ns']):9.1f} {float(r['refused_ns']):9.1f} "
              f"{float(r['ratio']):6.2f} {float(r['ratio_min']):5.2f}-{float(r['ratio_max']):4.2f}")
for lang in ["C", "go", "rust", "node", "python"]:
    if lang in notes:
        print(f"{lang}: {notes[lang]}")
PY
