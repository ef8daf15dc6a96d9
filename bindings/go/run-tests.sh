#!/usr/bin/env bash
# Installs this binding's dependencies (none beyond the Go standard library)
# and runs its tests, plainly and under the race detector; then the tests of
# the SDK middleware against the real OpenAI and Anthropic SDKs (sdktest/, a
# module of its own pinning them), when this go is new enough for them (the
# go line of sdktest/go.mod; with an older go, e.g. the oldest supported one,
# they are skipped with a message). Idempotent.
# The caller sets RATETRACK_LIBRARY to the libratetrack.so.0 to test against,
# and may set GO to the go binary to use (default: go on PATH, else
# /usr/local/go/bin/go), e.g. the oldest supported one:
#   GO=$(./install-min-toolchain.sh) RATETRACK_LIBRARY=... ./run-tests.sh
# Works from any working directory; exits non-zero on any failure.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -n "${GO:-}" ]]; then
  [[ -x "$GO" ]] || { echo "run-tests.sh: GO=$GO is not an executable" >&2; exit 2; }
  # Its own directory first, so nothing else's go is run by accident.
  export PATH="$(cd "$(dirname "$GO")" && pwd):$PATH"
  unset GOROOT
else
  command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null || { echo "run-tests.sh: go not found" >&2; exit 2; }
# Test with exactly this go: never switch to a toolchain named in go.mod.
export GOTOOLCHAIN=local
go version
# cgo needs a C compiler (only for the dlopen shim; nothing links libratetrack).
command -v "${CC:-cc}" >/dev/null || { echo "run-tests.sh: cgo needs a C compiler (apt-get install gcc)" >&2; exit 2; }
export CGO_ENABLED=1

go mod download
go mod verify
go vet ./...
go test -count=1 ./...
go test -race -count=1 ./...

# The SDK middleware against the real SDKs: a nested module (its own go.mod
# and go.sum; `go test ./...` above does not enter it).
if ! why=$(./sdk-go-ok.sh); then
  echo "run-tests.sh: SKIPPED sdktest ($why). The binding's own tests above ran with it."
  exit 0
fi
cd sdktest
go mod download
go mod verify
go vet ./...
go test -count=1 ./...
go test -race -count=1 ./...
