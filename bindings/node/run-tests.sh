#!/usr/bin/env bash
# Installs the Node.js binding's dependencies (from package-lock.json) and
# runs its tests against the library named by RATETRACK_LIBRARY.
# Works from any directory and can be run again and again; exits non-zero on
# any failure (node --test exits 1 when a test fails).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh

cd "$(dirname "${BASH_SOURCE[0]}")"

# Install from package-lock.json only when node_modules does not match it.
if ! npm ls --depth=0 --loglevel=silent >/dev/null 2>&1 || [[ ! -d node_modules/koffi ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node --test test/*.test.js
