#!/usr/bin/env bash
# Installs this binding's dependencies (none beyond the Go standard library)
# and runs its tests, plainly and under the race detector. Idempotent.
# The caller sets RATETRACK_LIBRARY to the libratetrack.so.0 to test against.
# Works from any working directory; exits non-zero on any failure.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh
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
