#!/usr/bin/env bash
# Fuzzes libratetrack: builds the libFuzzer targets of tests/fuzz (clang,
# AddressSanitizer + UndefinedBehaviorSanitizer), runs each target for a
# bounded time from its committed seed corpus, then replays every committed
# regression input (tests/fuzz/<target>/regressions/) once. Installs clang
# (and its fuzzer runtime) if missing (scripts/install-deps.sh --fuzz). The corpora are copied to a temporary
# directory: nothing is written into the checkout but the build directory.
#
#   scripts/fuzz.sh                          every target, 30 s each
#   RT_FUZZ_SECONDS=300 scripts/fuzz.sh      longer runs
#   RT_FUZZ_TARGETS="config headers" scripts/fuzz.sh   only some targets
#   RT_FUZZ_SECONDS=0 scripts/fuzz.sh        only the corpora and regressions, once
#
# Other settings: RT_FUZZ_BUILD_DIR (default build-fuzz), RT_FUZZ_TIMEOUT
# (seconds one input may take, default 10), RT_FUZZ_RSS_MB (default 2048),
# RT_FUZZ_ARTIFACTS (where failing inputs are kept, default
# <build dir>/fuzz-artifacts), RT_FUZZ_LENIENT (see tests/fuzz/README.md).
# Exits non-zero if any target crashed, leaked, timed out or broke an
# invariant; the reproducer's path and the command that replays it are
# printed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

all_targets=(config headers retry_after backend_url model_names api_sequence)
read -r -a targets <<< "${RT_FUZZ_TARGETS:-${all_targets[*]}}"
seconds=${RT_FUZZ_SECONDS:-30}
timeout=${RT_FUZZ_TIMEOUT:-10}
rss_mb=${RT_FUZZ_RSS_MB:-2048}
build=${RT_FUZZ_BUILD_DIR:-$root/build-fuzz}
artifacts=${RT_FUZZ_ARTIFACTS:-$build/fuzz-artifacts}
case "$seconds" in ''|*[!0-9]*) echo "RT_FUZZ_SECONDS must be a whole number" >&2; exit 64 ;; esac

# --- what the build needs: the project's dependencies, clang and libFuzzer.
scripts/install-deps.sh --fuzz || exit 1
clang_major=$(clang++ -dumpversion | cut -d. -f1)
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  > "$probe/p.cc"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" 2> "$probe/log"; then
  cat "$probe/log"
  echo "clang++ cannot link a libFuzzer target (is libclang-rt-$clang_major-dev installed?)" >&2
  exit 1
fi

# --- build.
mkdir -p "$build"
echo "=== fuzz: building in $build"
if ! CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DRATETRACK_FUZZ=ON -DRATETRACK_BUILD_TESTS=OFF -DRATETRACK_BUILD_BENCHMARKS=OFF \
       -DRATETRACK_BUILD_EXAMPLES=OFF > "$build/configure.log" 2>&1; then
  cat "$build/configure.log"; exit 1
fi
build_targets=()
for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
if ! cmake --build "$build" --target "${build_targets[@]}" > "$build/build.log" 2>&1; then
  tail -50 "$build/build.log"; exit 1
fi

# --- run.
work=$(mktemp -d)
trap 'rm -rf "$probe" "$work"' EXIT
# The targets never touch the global tracker, but keep the environment out.
unset RATETRACK_CONFIG RATETRACK_BACKEND RATETRACK_TIER
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
common=(-timeout="$timeout" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb")

failed=() passed=0
# keep TARGET LOG: saves the failing input(s) named in LOG, prints where.
keep() {
  local t=$1 log=$2 kept=0
  mkdir -p "$artifacts/$t"
  for a in "$work/$t/artifacts/"*; do
    [ -e "$a" ] || continue
    cp "$a" "$artifacts/$t/" && kept=1
    echo "    reproducer: $artifacts/$t/$(basename "$a")"
    echo "    replay:     $build/tests/fuzz/fuzz_$t $artifacts/$t/$(basename "$a")"
  done
  [ $kept = 1 ] || echo "    (no reproducer written; see the log above)"
  cp "$log" "$artifacts/$t/last-failure.log"
}

for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  src="$root/tests/fuzz/$t"
  [ -x "$bin" ] || { echo "=== fuzz $t: FAILED (no such target)"; failed+=("$t"); continue; }
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp "$src/corpus/"* "$work/$t/corpus/" 2>/dev/null
  dict=()
  [ -f "$src/$t.dict" ] && dict=(-dict="$src/$t.dict")
  ok=1
  log="$work/$t/fuzz.log"
  if [ "$seconds" -gt 0 ]; then
    echo "=== fuzz $t: ${seconds} s from $(ls "$src/corpus" | wc -l) seed inputs"
    "$bin" "${common[@]}" "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" > "$log" 2>&1
    rc=$?
  else
    echo "=== fuzz $t: the seed corpus, once"
    "$bin" "${common[@]}" -runs=0 -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" \
      > "$log" 2>&1
    rc=$?
  fi
  if [ $rc -ne 0 ]; then
    ok=0
    grep -v -E '^(#[0-9]+|INFO:|MERGE|Loaded|Done [0-9]+ runs)' "$log" | tail -60
    keep "$t" "$log"
  fi
  stats=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 | sed -E 's/^#([0-9]+)[[:space:]]+[A-Z]*[[:space:]]*/\1 runs, /')
  # Every committed regression input, once each.
  nreg=0
  if [ -d "$src/regressions" ]; then
    for f in "$src/regressions/"*; do
      [ -f "$f" ] || continue
      nreg=$((nreg + 1))
      rlog="$work/$t/regression.log"
      if ! "$bin" "${common[@]}" -artifact_prefix="$work/$t/artifacts/" "$f" > "$rlog" 2>&1; then
        ok=0
        grep -v -E '^(INFO:|Running:|Executed)' "$rlog" | tail -40
        echo "    regression input fails: $f"
        echo "    replay:     $bin $f"
        mkdir -p "$artifacts/$t" && cp "$rlog" "$artifacts/$t/last-failure.log"
      fi
    done
  fi
  if [ $ok = 1 ]; then
    passed=$((passed + 1))
    echo "=== fuzz $t: passed (${stats:-no stats}; $nreg regression inputs)"
  else
    failed+=("$t")
    echo "=== fuzz $t: FAILED (inputs kept in $artifacts/$t)"
  fi
done

echo
[ ${#failed[@]} -gt 0 ] && echo "fuzz: failed targets: ${failed[*]}"
echo "fuzz: ${passed} targets passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
