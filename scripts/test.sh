#!/usr/bin/env bash
# Runs every test: the C/C++ suite (GoogleTest via CTest: unit, C API,
# examples, exported symbols, header, install/pkg-config), the same suite under
# AddressSanitizer+UndefinedBehaviorSanitizer and under ThreadSanitizer, the
# libFuzzer targets for a bounded time (scripts/fuzz.sh), the Go, Rust,
# Node.js and Python bindings' own suites against the library built here,
# processes of every language on one segment, and the release packages with
# every README install command run verbatim (tests/newcomer.sh). Installs
# what is missing first.
#
#   scripts/test.sh                 everything
#   RT_SKIP_SANITIZERS=1 scripts/test.sh   without the two sanitizer builds
#   RT_ONLY="core go" scripts/test.sh      only some suites
#                                   (core valkey asan tsan fuzz go rust node python
#                                    shm-languages packages min-toolchains)
# The valkey suite runs the Redis suites (redis_test: real servers; the
# Python binding's Redis tests) again, against valkey-server and
# valkey-sentinel (RATETRACK_REDIS_SERVER, RATETRACK_REDIS_SENTINEL).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
scripts/install-deps.sh --bindings || exit 1

suites=(core valkey asan tsan fuzz go rust node python shm-languages packages min-toolchains)
[ "${RT_SKIP_SANITIZERS:-0}" = 1 ] && suites=(core valkey go rust node python shm-languages packages min-toolchains)
[ -n "${RT_ONLY:-}" ] && read -r -a suites <<< "$RT_ONLY"

passed=0 failed=0 failed_names=()
# Each suite's output is shown as it runs and kept, so that the end of the
# run can show again the last lines of every suite that failed (a CI log is
# often read from its end).
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run() {  # run NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  local start=$SECONDS
  if "$@" 2>&1 | tee "$logs/$name.log"; then  # (pipefail: the suite's status)
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
# The Redis suites against Valkey: the same tests, another server binary.
valkey_suite() {
  command -v valkey-server > /dev/null || { echo "no valkey-server (scripts/install-deps.sh)"; return 1; }
  [ -x build/tests/redis_test ] || build_core || return 1
  local rc=0
  (cd build && RATETRACK_REDIS_SERVER=valkey-server RATETRACK_REDIS_SENTINEL=valkey-sentinel \
    ctest --output-on-failure -j2 --timeout 300 -R '^Redis(Cluster|ClusterChange)?Test\.') || rc=1
  RATETRACK_REDIS_SERVER=$(command -v valkey-server) RATETRACK_LIBRARY="$lib" \
    bindings/python/run-tests.sh tests/test_redis.py || rc=1
  return $rc
}
binding() {  # binding LANG
  [ -e "$lib" ] || { echo "no $lib: the core build failed"; return 1; }
  RATETRACK_LIBRARY="$lib" "bindings/$1/run-tests.sh"
}

# The release packages, and every README install command and first program
# run verbatim by a newcomer in a fresh directory (tests/newcomer.sh), the
# SDK programs of the bindings' READMEs too. The .deb is installed for
# the newcomers (the system loader finds the library with no variable set),
# and removed afterwards unless it was installed before.
packages_suite() {
  local had_deb=0 rc=0 l
  dpkg-query -W -f='${Status}' libratetrack 2>/dev/null | grep -q "install ok installed" && had_deb=1
  scripts/package.sh dist > /dev/null || return 1
  tests/package_test.sh dist || rc=1
  bindings/python/tests/wheel_test.sh || rc=1
  for l in c c-deb python node go rust; do
    tests/newcomer.sh "$l" || rc=1
  done
  # ... and on the oldest toolchains each binding supports
  NEWCOMER_GO=$(bindings/go/install-min-toolchain.sh) tests/newcomer.sh go || rc=1
  NEWCOMER_CARGO=$(bindings/rust/install-min-toolchain.sh) tests/newcomer.sh rust || rc=1
  NEWCOMER_NODE_BIN=$(bindings/node/install-min-toolchain.sh) tests/newcomer.sh node || rc=1
  # ... and the first SDK programs of the bindings' READMEs: the SDKs from
  # the registries at the tested versions, against a local fake of the API
  # (openai-go needs a newer Go than the binding: where the machine's go is
  # older, as Debian 12's 1.19, that one is skipped, saying so)
  local why
  for l in python-openai python-langchain node-openai node-ai go-openai; do
    if [ "$l" = go-openai ] && ! why=$(PATH="/usr/local/go/bin:$PATH" bindings/go/sdk-go-ok.sh); then
      echo "newcomer go-openai: SKIPPED ($why)"
      continue
    fi
    tests/newcomer.sh "$l" "bindings/${l%%-*}/README.md" || rc=1
  done
  [ $had_deb = 1 ] || dpkg -r libratetrack > /dev/null 2>&1 || true
  return $rc
}

# Each binding's suite on the oldest toolchain it supports (the newest runs
# in the suites above): Go 1.19 and rustc 1.63 / cargo 1.65 from Debian 12,
# Node.js 18 with npm 9 (Debian 12's versions, from the npm registry),
# Python 3.8 and 3.13 (the machine's pyenv interpreters, where present).
min_toolchains_suite() {
  local rc=0
  [ -e "$lib" ] || { echo "no $lib: the core build failed"; return 1; }
  GO=$(bindings/go/install-min-toolchain.sh) && RATETRACK_LIBRARY="$lib" GO="$GO" bindings/go/run-tests.sh || rc=1
  CARGO=$(bindings/rust/install-min-toolchain.sh) && RATETRACK_LIBRARY="$lib" CARGO="$CARGO" bindings/rust/run-tests.sh || rc=1
  local node_bin
  node_bin=$(bindings/node/install-min-toolchain.sh) && RATETRACK_LIBRARY="$lib" NODE="$node_bin/node" bindings/node/run-tests.sh || rc=1
  local py
  for py in /root/.pyenv/versions/3.8.*/bin/python3 /root/.pyenv/versions/3.13.*/bin/python3; do
    [ -x "$py" ] || continue
    RATETRACK_LIBRARY="$lib" PYTHON="$py" bindings/python/run-tests.sh || rc=1
  done
  return $rc
}

for s in "${suites[@]}"; do
  case "$s" in
    core) run core build_core ;;
    valkey) run valkey valkey_suite ;;
    asan) run asan+ubsan cmake_suite build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DRATETRACK_SANITIZE=address,undefined -DRATETRACK_BUILD_BENCHMARKS=OFF ;;
    tsan) run tsan cmake_suite build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DRATETRACK_SANITIZE=thread -DRATETRACK_BUILD_BENCHMARKS=OFF ;;
    go|rust|node|python)
      [ -e "$lib" ] || run core-for-bindings build_core
      run "$s" binding "$s" ;;
    fuzz) run fuzz scripts/fuzz.sh ;;
    packages) run packages packages_suite ;;
    min-toolchains)
      [ -e "$lib" ] || run core-for-bindings build_core
      run min-toolchains min_toolchains_suite ;;
    shm-languages)  # C, Go, Rust, Node.js and Python processes on one segment
      [ -e "$lib" ] || run core-for-bindings build_core
      run "$s" env RATETRACK_LIBRARY="$lib" SHM_RACER_C="$root/build/examples/shm_racer" \
        tests/shm_languages_test.sh ;;
    *) echo "unknown suite '$s'"; failed=$((failed + 1)) ;;
  esac
done

echo
for name in "${failed_names[@]}"; do
  echo "=== the last 40 lines of $name:"
  tail -n 40 "$logs/$name.log"
  echo
done
[ $failed -gt 0 ] && echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
