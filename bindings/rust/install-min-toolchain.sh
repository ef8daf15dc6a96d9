#!/usr/bin/env bash
# Installs the oldest Rust this crate supports (`rust-version` in
# Cargo.toml): Debian 12's rustc 1.63 and cargo 1.65 (/usr/bin/rustc,
# /usr/bin/cargo; a rustup toolchain in ~/.cargo/bin is left alone), and
# prints the path of its cargo. Idempotent: when they are there already, it
# only prints the path. Needs root (or sudo) and Debian's apt sources.
#
#   CARGO=$(bindings/rust/install-min-toolchain.sh) RUSTC=/usr/bin/rustc bindings/rust/run-tests.sh
set -euo pipefail
cargo_bin=/usr/bin/cargo rustc_bin=/usr/bin/rustc

if [[ ! -x "$cargo_bin" || ! -x "$rustc_bin" ]]; then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when apt does not know the packages yet.
  apt-cache show cargo rustc >/dev/null 2>&1 || "${sudo[@]}" apt-get update -q >&2
  "${sudo[@]}" apt-get install -y -q --no-install-recommends cargo rustc >&2
fi
"$rustc_bin" --version >&2
"$cargo_bin" --version >&2
echo "$cargo_bin"
