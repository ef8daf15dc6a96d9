#!/usr/bin/env bash
# Installs the Rust binding's dependencies (from Cargo.lock) and runs its tests.
# Expects RATETRACK_LIBRARY to name the built libratetrack.so.0.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
export PATH="$HOME/.cargo/bin:$PATH"
cargo fetch --locked
cargo test --locked --no-fail-fast
cargo run --locked --quiet --example agent
