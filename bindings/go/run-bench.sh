#!/usr/bin/env bash
# Runs the Go benchmark and prints "BENCH go try_acquire_ns=<ns per TryAcquire>
# floor_ns=<ns per cgo call of rt_version_number, the FFI's floor>
# refused_ns=<ns per TryAcquire refused>", then BenchmarkThreads's thread
# rows (THREADS and THREAD_ROW lines: admitted and refused from 1, 2 and 4
# goroutines, on one model and on a model each).
# Needs RATETRACK_LIBRARY (or libratetrack.so.0 on the loader path).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
resolve_library
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
out=$(go test -run '^$' -bench '^Benchmark(TryAcquire|TryAcquireRefused|FFIFloor)$' -benchtime 2s -count 1 .)
echo "$out"
ns=$(awk '$1 ~ /^BenchmarkTryAcquire(-[0-9]+)?$/ { print $3 }' <<<"$out")
refused=$(awk '$1 ~ /^BenchmarkTryAcquireRefused(-[0-9]+)?$/ { print $3 }' <<<"$out")
floor=$(awk '$1 ~ /^BenchmarkFFIFloor(-[0-9]+)?$/ { print $3 }' <<<"$out")
[[ -n "$ns" ]] || { echo "no BenchmarkTryAcquire result" >&2; exit 1; }
echo "BENCH go try_acquire_ns=$ns floor_ns=${floor:-?} refused_ns=${refused:-?}"
# It runs its own interleaved rounds, once (-benchtime 1x).
go test -run '^$' -bench '^BenchmarkThreads$' -benchtime 1x -count 1 . | grep '^THREAD'
