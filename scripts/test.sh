#!/usr/bin/env bash
# Runs every test: the C/C++ suite (GoogleTest via CTest: unit, C API,
# examples, exported symbols, header, install/pkg-config), the same suite under
# AddressSanitizer+UndefinedBehaviorSanitizer and under ThreadSanitizer, and
# the Go, Rust, Node.js and Python bindings' own suites against the library
# built here. Installs what is missing first.
#
#   scripts/test.sh                 everything
#   RT_SKIP_SANITIZERS=1 scripts/test.sh   without the two sanitizer builds
#   RT_ONLY="core go" scripts/test.sh      only some suites
#                                   (core asan tsan go rust node python shm-languages)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
scripts/install-deps.sh --bindings || exit 1

suites=(core asan tsan go rust node python shm-languages)
[ "${RT_SKIP_SANITIZERS:-0}" = 1 ] && suites=(core go rust node python shm-languages)
[ -n "${RT_ONLY:-}" ] && read -r -a suites <<< "$RT_ONLY"

passed=0 failed=0 failed_names=()
run() {  # run NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: passed ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "=== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

cmake_suite() {  # cmake_suite BUILD_DIR [cmake args...]
  local dir=$1; shift
  mkdir -p "$dir"
  cmake -S . -B "$dir" -G Ninja "$@" > "$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; return 1; }
  cmake --build "$dir" > "$dir/build.log" 2>&1 || { tail -50 "$dir/build.log"; return 1; }
  (cd "$dir" && ctest --output-on-failure -j2 --timeout 300)
}

mkdir -p build
build_core() { cmake_suite build -DCMAKE_BUILD_TYPE=Release; }
lib="$root/build/libratetrack.so.0"
binding() {  # binding LANG
  [ -e "$lib" ] || { echo "no $lib: the core build failed"; return 1; }
  RATETRACK_LIBRARY="$lib" "bindings/$1/run-tests.sh"
}

for s in "${suites[@]}"; do
  case "$s" in
    core) run core build_core ;;
    asan) run asan+ubsan cmake_suite build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DRATETRACK_SANITIZE=address,undefined -DRATETRACK_BUILD_BENCHMARKS=OFF ;;
    tsan) run tsan cmake_suite build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DRATETRACK_SANITIZE=thread -DRATETRACK_BUILD_BENCHMARKS=OFF ;;
    go|rust|node|python)
      [ -e "$lib" ] || run core-for-bindings build_core
      run "$s" binding "$s" ;;
    shm-languages)  # C, Go, Rust, Node.js and Python processes on one segment
      [ -e "$lib" ] || run core-for-bindings build_core
      run "$s" env RATETRACK_LIBRARY="$lib" SHM_RACER_C="$root/build/examples/shm_racer" \
        tests/shm_languages_test.sh ;;
    *) echo "unknown suite '$s'"; failed=$((failed + 1)) ;;
  esac
done

echo
[ $failed -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
