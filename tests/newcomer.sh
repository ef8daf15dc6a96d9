#!/usr/bin/env bash
# The newcomer test: what a new user of one language does, taken verbatim
# from README.md, so the README and the test cannot drift apart. In a fresh
# temporary directory, with a clean environment (no RATETRACK_*, no
# LD_LIBRARY_PATH, a fresh HOME), it
#   1. makes the project a user would have (a venv, `npm init -y`,
#      `go mod init`, `cargo init`; nothing for C),
#   2. runs the README's install command for LANG exactly as written,
#      with /path/to/libratetrack replaced by this checkout,
#   3. writes the README's first program for LANG and runs it as the README
#      says, and checks that it acquired, settled and read its stats.
#
#   tests/newcomer.sh LANG [README]       LANG: a name used in the markers
#
# The README marks each piece with an HTML comment before its code block:
#   <!-- newcomer:LANG:install -->        a sh block: the install command
#   <!-- newcomer:LANG:program FILE -->   any block: written to FILE (LANG-x
#                                         without one uses LANG's)
#   <!-- newcomer:LANG:run -->            a sh block: builds and runs it
# A program passes when it exits 0 and prints a line starting "newcomer ok".
# A run marker with the word fake-llm (<!-- newcomer:LANG:run fake-llm -->)
# is for a program that calls an LLM API through its SDK: it runs against a
# local fake of the OpenAI and Anthropic APIs (bindings/python/tests/fake_llm.py,
# the binding tests' own), not the internet, and the clean environment gets
# only the variables the SDKs read: OPENAI_BASE_URL and OPENAI_API_KEY,
# ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY. Such a program also fails when
# no request of it reached the fake.
# NEWCOMER_PYTHON picks the python the venv is made with (default python3);
# NEWCOMER_GO / NEWCOMER_CARGO a go / cargo binary (below); NEWCOMER_NODE_BIN
# a directory with node and npm;
# NEWCOMER_KEEP=1 keeps the directory.
set -euo pipefail
lang=${1:?usage: tests/newcomer.sh LANG [README]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readme=${2:-$root/README.md}

# block KEY: the code block after the marker <!-- newcomer:KEY[ ...] -->.
block() {
  awk -v key="newcomer:$1" '
    index($0, "<!-- " key " ") == 1 || $0 == "<!-- " key " -->" { found = 1; next }
    found == 1 && /^```/ { found = 2; next }
    found == 2 && /^```/ { exit }
    found == 2 { print }
  ' "$readme"
}
marker_arg() {  # the FILE of <!-- newcomer:KEY FILE -->
  sed -n "s/^<!-- newcomer:$1 \([^ ]*\) -->$/\1/p" "$readme" | head -1
}

install_cmd=$(block "$lang:install")
# Variants of a language (c-deb, ...) share its program unless they have one.
program_key="$lang:program"
[ -n "$(marker_arg "$program_key")" ] || program_key="${lang%%-*}:program"
program_file=$(marker_arg "$program_key")
program=$(block "$program_key")
run_cmd=$(block "$lang:run")
fake_llm=0
[ "$(marker_arg "$lang:run")" != fake-llm ] || fake_llm=1
for part in install_cmd program_file program run_cmd; do
  [ -n "${!part}" ] || { echo "newcomer $lang: README has no '$part' for $lang"; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/newcomer-$lang.XXXXXX")
fake_pid=
cleanup() {
  [ -z "$fake_pid" ] || { kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; } || true
  [ "${NEWCOMER_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/home" "$work/app"
# The toolchains as installed on this machine; nothing of this project's.
path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
for d in /usr/local/go/bin /root/.cargo/bin "$HOME/.cargo/bin" "${PYENV_ROOT:-$HOME/.pyenv}/shims"; do
  [ -d "$d" ] && path="$d:$path"
done
# NEWCOMER_GO / NEWCOMER_CARGO: the go / cargo binary to use instead (e.g. the
# oldest supported, from bindings/*/install-min-toolchain.sh); its directory
# goes first on PATH.
for b in "${NEWCOMER_GO:-}" "${NEWCOMER_CARGO:-}"; do
  [ -z "$b" ] || path="$(dirname "$b"):$path"
done
# NEWCOMER_NODE_BIN: a directory holding node, npm and npx (the one
# bindings/node/install-min-toolchain.sh prints), first on PATH.
[ -z "${NEWCOMER_NODE_BIN:-}" ] || path="$NEWCOMER_NODE_BIN:$path"
clean_env=(env -i HOME="$work/home" PATH="$path" LANG=C.UTF-8 TMPDIR="$work"
           RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
           PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
           npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false)
# The machine's own trust settings (a proxy's CA), which every user of the
# machine has: a Node.js from the registry's tarball reads only its bundled
# CAs and NODE_EXTRA_CA_CERTS.
for v in NODE_EXTRA_CA_CERTS SSL_CERT_FILE SSL_CERT_DIR PIP_CERT REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do
  [ -z "${!v:-}" ] || clean_env+=("$v=${!v}")
done
# A cargo before 1.68 (Debian 12's 1.65) needs the sparse protocol turned on
# (scripts/cargo-env.sh): the one given, or the one on the clean PATH.
. "$root/scripts/cargo-env.sh"
cargo_compat_env "${NEWCOMER_CARGO:-$(PATH=$path command -v cargo || echo cargo)}"
clean_env+=(${CARGO_COMPAT_ENV[@]+"${CARGO_COMPAT_ENV[@]}"})
run() {  # run WHAT SCRIPT: SCRIPT in the app directory, clean environment
  local what=$1 script=$2
  echo "--- $what"
  echo "$script" | sed 's/^/    $ /'
  (cd "$work/app" && "${clean_env[@]}" bash -euo pipefail -c "$script") > "$work/$what.log" 2>&1 || {
    tail -40 "$work/$what.log"
    echo "newcomer $lang: '$what' failed (log above)"
    exit 1
  }
}

use_venv() {  # the venv's bin first on PATH, as `. venv/bin/activate` does
  local i
  for i in "${!clean_env[@]}"; do
    [[ ${clean_env[$i]} == PATH=* ]] && clean_env[$i]="PATH=$work/app/venv/bin:$path"
  done
  clean_env+=("VIRTUAL_ENV=$work/app/venv")
}
case "$lang" in
  python*) run setup "${NEWCOMER_PYTHON:-python3} -m venv venv"; use_venv ;;
  node*)   run setup "npm init -y" ;;
  go*)     run setup "go mod init example.com/newcomer" ;;
  rust*)   run setup "cargo init --name newcomer" ;;
  *)       ;;
esac
run install "${install_cmd//\/path\/to\/libratetrack/$root}"
mkdir -p "$work/app/$(dirname "$program_file")"
printf '%s\n' "$program" > "$work/app/$program_file"
if [ $fake_llm = 1 ]; then  # the fake API, on a free loopback port
  python3 "$root/bindings/python/tests/fake_llm.py" > "$work/fake-llm.log" 2>&1 &
  fake_pid=$!
  for _ in $(seq 300); do  # 30 s at most (a loaded machine)
    url=$(head -1 "$work/fake-llm.log")
    [[ $url == http://* ]] && break
    kill -0 "$fake_pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ $url == http://* ]] || { cat "$work/fake-llm.log"; echo "newcomer $lang: the fake API did not start"; exit 1; }
  echo "--- the fake API at $url"
  clean_env+=("OPENAI_BASE_URL=$url" OPENAI_API_KEY=sk-newcomer-fake
              "ANTHROPIC_BASE_URL=${url%/v1}" ANTHROPIC_API_KEY=sk-ant-newcomer-fake)
fi
run program "${run_cmd//\/path\/to\/libratetrack/$root}"
if [ $fake_llm = 1 ]; then  # what it served, printed as it stops
  kill "$fake_pid"; wait "$fake_pid" || true; fake_pid=
  served=$(grep '^fake_llm: ' "$work/fake-llm.log" || true)
  echo "    ${served:-the fake API said nothing}"
  [[ $served == "fake_llm: "[1-9]* ]] || {
    cat "$work/program.log"
    echo "newcomer $lang: no request of the program reached the fake API"
    exit 1
  }
fi
grep "^newcomer ok" "$work/program.log" || {
  cat "$work/program.log"
  echo "newcomer $lang: the program did not print 'newcomer ok'"
  exit 1
}
echo "newcomer $lang: ok"
