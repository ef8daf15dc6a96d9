#!/usr/bin/env bash
# Installs the Rust binding's dependencies (from Cargo.lock) and runs its tests.
# Expects RATETRACK_LIBRARY to name the built libratetrack.so.0.
set -euo pipefail
# Resolve a relative RATETRACK_LIBRARY against the caller's directory first.
if [[ -n "${RATETRACK_LIBRARY:-}" && "$RATETRACK_LIBRARY" != /* && -e "$RATETRACK_LIBRARY" ]]; then
  RATETRACK_LIBRARY="$(cd "$(dirname "$RATETRACK_LIBRARY")" && pwd)/$(basename "$RATETRACK_LIBRARY")"
  export RATETRACK_LIBRARY
fi
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
  echo "run-tests.sh: set RATETRACK_LIBRARY to the path of libratetrack.so.0" >&2
  exit 2
fi
if [[ ! -e "$RATETRACK_LIBRARY" ]]; then
  echo "run-tests.sh: RATETRACK_LIBRARY=$RATETRACK_LIBRARY does not exist" >&2
  exit 2
fi
export PATH="$HOME/.cargo/bin:$PATH"
cargo fetch --locked
cargo test --locked --no-fail-fast
cargo run --locked --quiet --example agent
