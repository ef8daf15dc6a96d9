#!/usr/bin/env bash
# Installs this binding's dependencies (none beyond the Go standard library)
# and runs its tests, plainly and under the race detector. Idempotent.
# The caller sets RATETRACK_LIBRARY to the libratetrack.so.0 to test against.
# Works from any working directory; exits non-zero on any failure.
set -euo pipefail

if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
	echo "run-tests.sh: set RATETRACK_LIBRARY to the path of libratetrack.so.0" >&2
	exit 2
fi
if [[ ! -e "$RATETRACK_LIBRARY" ]]; then
	echo "run-tests.sh: RATETRACK_LIBRARY=$RATETRACK_LIBRARY does not exist" >&2
	exit 2
fi
# Made absolute before the cd below, so a relative path keeps working.
RATETRACK_LIBRARY=$(cd "$(dirname "$RATETRACK_LIBRARY")" && pwd)/$(basename "$RATETRACK_LIBRARY")
export RATETRACK_LIBRARY
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "run-tests.sh: go not found" >&2; exit 2; }
# cgo needs a C compiler (only for the dlopen shim; nothing links libratetrack).
command -v "${CC:-cc}" >/dev/null || { echo "run-tests.sh: cgo needs a C compiler (apt-get install gcc)" >&2; exit 2; }
export CGO_ENABLED=1

go mod download
go mod verify
go vet ./...
go test -count=1 ./...
go test -race -count=1 ./...
