# Sourced by the scripts that run cargo. A cargo before 1.68 (Debian 12's is
# 1.65) reads crates.io's index from a git clone of github.com: slow, and
# unreachable where only the package registries are. It has the sparse
# protocol of later cargos, unstable there: enabled with cargo's own channel
# override (unlike RUSTC_BOOTSTRAP, rustc and build scripts stay on the
# stable channel).
#   cargo_compat_env [CARGO]   sets CARGO_COMPAT_ENV to the VAR=value words
#                              that cargo needs (none for cargo >= 1.68)
cargo_compat_env() {
  local minor
  minor=$("${1:-cargo}" --version 2>/dev/null | sed -n 's/^cargo 1\.\([0-9]*\)\..*/\1/p')
  CARGO_COMPAT_ENV=()
  if [[ -n "$minor" && "$minor" -lt 68 ]]; then
    CARGO_COMPAT_ENV=(CARGO_UNSTABLE_SPARSE_REGISTRY=true
                      __CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS=nightly)
  fi
}
