#!/usr/bin/env bash
# Installs the Rust binding's dependencies (from Cargo.lock) and runs its tests.
# Expects RATETRACK_LIBRARY to name the built libratetrack.so.0. CARGO may name
# the cargo to use (default: cargo from ~/.cargo/bin or PATH); the rustc and
# rustdoc beside it are used with it unless RUSTC / RUSTDOC say otherwise.
# The oldest supported toolchain (Debian 12's):
#   CARGO=$(./install-min-toolchain.sh) RATETRACK_LIBRARY=... ./run-tests.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -n "${CARGO:-}" ]]; then
  [[ -x "$CARGO" ]] || { echo "run-tests.sh: CARGO=$CARGO is not an executable" >&2; exit 2; }
  bin=$(cd "$(dirname "$CARGO")" && pwd)
  export PATH="$bin:$PATH"
  # Its own compiler, not a rustup proxy that comes first on PATH.
  if [[ -z "${RUSTC:-}" && -x "$bin/rustc" ]]; then export RUSTC="$bin/rustc"; fi
  if [[ -z "${RUSTDOC:-}" && -x "$bin/rustdoc" ]]; then export RUSTDOC="$bin/rustdoc"; fi
else
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cargo --version
"${RUSTC:-rustc}" --version
# A cargo older than 1.68 (Debian 12's 1.65) needs crates.io's sparse index
# turned on (scripts/cargo-env.sh).
. ../../scripts/cargo-env.sh
cargo_compat_env cargo
[[ ${#CARGO_COMPAT_ENV[@]} -eq 0 ]] || export "${CARGO_COMPAT_ENV[@]}"
cargo fetch --locked
cargo test --locked --no-fail-fast
cargo run --locked --quiet --example agent
