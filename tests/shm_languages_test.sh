#!/usr/bin/env bash
# Processes in different languages at once: a C, a Go, a Rust, a Node.js and a
# Python racer (examples/shm_racer.c and bindings/*/examples/racer*) race
# try_acquire on the same model through the same "shm:NAME" segment. In every
# round the total admitted must equal the limit exactly, and every racer must
# exit 0.
#
#   RATETRACK_LIBRARY=/path/to/libratetrack.so.0 tests/shm_languages_test.sh
#
# Builds what it needs: the Go racer (go build, into a temporary directory),
# the Rust racer (cargo build --release --example racer), the Node.js
# binding's node_modules (npm ci, if missing). The C racer is $SHM_RACER_C if
# set, else build/examples/shm_racer, else examples/shm_racer.c compiled here
# against the library's directory. Each round uses its own segment
# (lang-race-<pid>-<round>), removed before the round and at exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

. "$root/scripts/library-env.sh"
require_library shm_languages_test.sh
libdir=$(dirname "$RATETRACK_LIBRARY")
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"

MODEL=acme/race-model
LIMITS=(1000 2503 77 100003)  # the last one is long enough for all five to overlap
work=$(mktemp -d "${TMPDIR:-/tmp}/shm-languages.XXXXXX")
segments=()
pids=()

cleanup() {
  local pid seg
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for seg in "${segments[@]}"; do rm -f "/dev/shm/ratetrack.$seg"; done
  rm -rf "$work"
}
trap cleanup EXIT

# ------------------------------------------------------------------ builds
echo "building the racers..."
if [[ -n "${SHM_RACER_C:-}" ]]; then
  c_racer=$SHM_RACER_C
elif [[ -x "$root/build/examples/shm_racer" ]]; then
  c_racer=$root/build/examples/shm_racer
else
  c_racer=$work/shm_racer
  "${CC:-cc}" -std=c99 -O2 -I "$root/include" "$root/examples/shm_racer.c" \
    "$RATETRACK_LIBRARY" -Wl,-rpath,"$libdir" -o "$c_racer"
fi
[[ -x "$c_racer" ]] || { echo "C racer $c_racer is not executable" >&2; exit 2; }

(cd "$root/bindings/go" && CGO_ENABLED=1 go build -o "$work/go-racer" ./examples/racer)

. "$root/scripts/cargo-env.sh"
cargo_compat_env cargo
(cd "$root/bindings/rust" &&
   env ${CARGO_COMPAT_ENV[@]+"${CARGO_COMPAT_ENV[@]}"} cargo build --locked --quiet --release --example racer)
rust_racer=$root/bindings/rust/target/release/examples/racer

if [[ ! -d "$root/bindings/node/node_modules/koffi" ]]; then
  (cd "$root/bindings/node" && npm ci --no-audit --no-fund --loglevel=error)
fi

python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')

# The racers, in the order they are reported. run_racer execs, so that the
# pid of a racer started with `run_racer ... &` is the racer's own. The C
# racer links libratetrack at build time: LD_LIBRARY_PATH points it at the
# library under test.
langs=(c go rust node python)
run_racer() {  # run_racer LANG NAME MODEL LIMIT ATTEMPTS START_FILE
  local lang=$1; shift
  case $lang in
    c) LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec "$c_racer" "$@" ;;
    go) exec "$work/go-racer" "$@" ;;
    rust) exec "$rust_racer" "$@" ;;
    node) exec node "$root/bindings/node/examples/racer.js" "$@" ;;
    python) PYTHONPATH=$root/bindings/python/src exec "$python" "$root/bindings/python/examples/racer.py" "$@" ;;
  esac
}

# Whether process $1 has a ratetrack segment mapped, i.e. has opened its
# tracker and is now waiting for the start file. (A creator maps the segment
# under a temporary name, /dev/shm/.ratetrack.NAME.*, before publishing it.)
has_segment() {
  grep -qE ' /dev/shm/\.?ratetrack\.' "/proc/$1/maps" 2>/dev/null
}

# ------------------------------------------------------------------ rounds
passed=0 failed=0
round=0
for limit in "${LIMITS[@]}"; do
  round=$((round + 1))
  name=lang-race-$$-$round
  segments+=("$name")
  rm -f "/dev/shm/ratetrack.$name"
  attempts=$((limit * 2))
  start=$work/start-$round
  ok=1

  pids=()
  for lang in "${langs[@]}"; do
    run_racer "$lang" "$name" "$MODEL" "$limit" "$attempts" "$start" \
      > "$work/$lang-$round.out" 2> "$work/$lang-$round.err" &
    pids+=($!)
  done

  # Start the race once every racer has opened its tracker (at most 10 s).
  deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do
    ready=0
    for pid in "${pids[@]}"; do
      if has_segment "$pid" || ! kill -0 "$pid" 2>/dev/null; then
        ready=$((ready + 1))
      fi
    done
    ((ready == ${#pids[@]})) && break
    sleep 0.005
  done
  touch "$start"

  total=0
  for j in "${!langs[@]}"; do
    lang=${langs[$j]}
    rc=0
    wait "${pids[$j]}" || rc=$?
    out=$(cat "$work/$lang-$round.out")
    if [[ $rc -eq 0 && "$out" =~ ^admitted\ ([0-9]+)$ ]]; then
      n=${BASH_REMATCH[1]}
      total=$((total + n))
      printf '  %-7s admitted %6d of %6d attempts\n' "$lang" "$n" "$attempts"
    else
      ok=0
      printf '  %-7s FAILED (exit %d): stdout %q, stderr: %s\n' "$lang" "$rc" "$out" \
        "$(tr '\n' ' ' < "$work/$lang-$round.err")"
    fi
  done
  pids=()
  rm -f "/dev/shm/ratetrack.$name"

  [[ $total -eq $limit ]] || ok=0
  if [[ $ok -eq 1 ]]; then
    echo "round $round: total $total of $limit"
    passed=$((passed + 1))
  else
    echo "round $round: total $total of $limit: FAILED"
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
