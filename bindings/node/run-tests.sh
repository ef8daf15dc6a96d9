#!/usr/bin/env bash
# Installs the Node.js binding's dependencies (from package-lock.json) and
# runs its tests against the library named by RATETRACK_LIBRARY.
# Works from any directory and can be run again and again; exits non-zero on
# any failure (node --test exits 1 when a test fails).
set -euo pipefail

if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
  echo "run-tests.sh: set RATETRACK_LIBRARY to the path of libratetrack.so.0" >&2
  exit 2
fi
if [[ ! -e "$RATETRACK_LIBRARY" ]]; then
  echo "run-tests.sh: RATETRACK_LIBRARY=$RATETRACK_LIBRARY does not exist" >&2
  exit 2
fi
# A relative path is taken from the caller's directory, before the cd below.
[[ "$RATETRACK_LIBRARY" == /* ]] || RATETRACK_LIBRARY="$PWD/$RATETRACK_LIBRARY"
export RATETRACK_LIBRARY

cd "$(dirname "${BASH_SOURCE[0]}")"

# Install from package-lock.json only when node_modules does not match it.
if ! npm ls --depth=0 --loglevel=silent >/dev/null 2>&1 || [[ ! -d node_modules/koffi ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
node --test test/*.test.js
