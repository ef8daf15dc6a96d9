#!/usr/bin/env bash
# Installs the oldest Go this binding supports (the `go` line of go.mod),
# Debian 12's golang-1.19-go, next to any other Go (it goes to
# /usr/lib/go-1.19 and touches neither /usr/local/go nor /usr/bin/go), and
# prints the path of its go binary. Idempotent: when it is there already,
# it only prints the path. Needs root (or sudo) and Debian's apt sources.
#
#   GO=$(bindings/go/install-min-toolchain.sh) bindings/go/run-tests.sh
set -euo pipefail
version=1.19
go_bin=/usr/lib/go-$version/bin/go

if [[ ! -x "$go_bin" ]]; then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when apt does not know the package yet.
  apt-cache show "golang-$version-go" >/dev/null 2>&1 || "${sudo[@]}" apt-get update -q >&2
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "golang-$version-go" >&2
fi
"$go_bin" version >&2
echo "$go_bin"
