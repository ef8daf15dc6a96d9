#!/usr/bin/env bash
# Installs the Node.js binding's dependencies (from package-lock.json) and
# runs its tests against the library named by RATETRACK_LIBRARY.
# Works from any directory and can be run again and again; exits non-zero on
# any failure (node --test exits 1 when a test fails).
#
#   RATETRACK_LIBRARY=/path/to/libratetrack.so.0 bindings/node/run-tests.sh
#   NODE=/path/to/node [NPM=/path/to/npm] ... run-tests.sh     another toolchain
#
# NODE: the node to test with (default: node on PATH). NPM: the npm for
# `npm ci` and the install tests (default: the npm beside NODE, else npm on
# PATH). NODE's directory goes first on PATH, so that package scripts and
# anything the tests start use the same node. For the minimum toolchain
# (Node 18, npm 9): NODE=$(bindings/node/install-min-toolchain.sh)/node.
# RATETRACK_SKIP_INSTALL_TESTS=1 skips test/install.test.js (it needs the
# npm registry).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh

cd "$(dirname "${BASH_SOURCE[0]}")"

NODE=${NODE:-node}
if [[ $NODE == */* ]]; then
  NODE=$(cd "$(dirname "$NODE")" && pwd)/$(basename "$NODE")
  export PATH="$(dirname "$NODE"):$PATH"
  if [[ -z ${NPM:-} && -x $(dirname "$NODE")/npm ]]; then NPM=$(dirname "$NODE")/npm; fi
fi
NPM=${NPM:-npm}
export NODE NPM
echo "run-tests.sh: node $("$NODE" --version) ($(command -v "$NODE")), npm $("$NPM" --version) ($(command -v "$NPM"))"

# Install from package-lock.json only when node_modules does not match it.
if ! "$NPM" ls --depth=0 --loglevel=silent >/dev/null 2>&1 || [[ ! -d node_modules/koffi ]]; then
  "$NPM" ci --no-audit --no-fund --loglevel=error
fi
"$NODE" --test test/*.test.js
