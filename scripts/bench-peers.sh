#!/usr/bin/env bash
# Prints libratetrack next to the rate limiters users would pick instead, one
# process per language (Rust: governor; Go: golang.org/x/time/rate; Node.js:
# limiter and rate-limiter-flexible; Python: limits and pyrate-limiter), with
# the limits of a real model (rpm 500, tpm 200,000, rpd 10,000, tpd
# 2,000,000) and 100 tokens a decision, admitting and refusing.
#
# In each process the cases run in interleaved rounds (the order rotates
# each round; round 0 is a warm-up and is dropped); a case's figure in a
# round is the ns per decision over its batches of 400 decisions. Every
# batch starts from fresh state outside the timing (libratetrack: reset();
# a peer: new limiters): admitting, the 400 decisions all fit every limit;
# refusing, the limit is spent first (rpm: 500 requests; a tpm-only limiter:
# 2,000 decisions), then the 400 are all refused. A peer runs as four
# limiters composed (one per window; look at each, then consume from each,
# where the peer can look without consuming, else consume in turn and stop
# at the first refusal) and, for information, as one limiter (tpm only).
# Printed: the median over the rounds with the range, and the median of the
# ratios to libratetrack in the same round, with their range.
#
# Installs what it needs (cargo, go, npm ci, pip in a throwaway venv) from
# the registries. Figures, not a test: nothing here fails on a slow machine.
#
#   scripts/bench-peers.sh [rust|go|node|python]...   default: all four
# PEERS_ROUNDS (default 11) sets the rounds; PEERS_BATCHES the batches per
# case and round (defaults: Rust 250, Go 100, Node.js 25, Python 10).
# RATETRACK_LIBRARY: a built libratetrack.so.0 (otherwise built in build-peers/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=(rust go node python)

if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
  cmake -S . -B build-peers -G Ninja -DCMAKE_BUILD_TYPE=Release -DRATETRACK_BUILD_TESTS=OFF > /dev/null
  cmake --build build-peers --target ratetrack > /dev/null
  RATETRACK_LIBRARY=$root/build-peers/libratetrack.so.0
fi
export RATETRACK_LIBRARY=$(cd "$(dirname "$RATETRACK_LIBRARY")" && pwd)/$(basename "$RATETRACK_LIBRARY")
export PATH="$HOME/.cargo/bin:$PATH:/usr/local/go/bin"

out=$(mktemp); venv=$(mktemp -d)
trap 'rm -rf "$out" "$venv"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "library: $RATETRACK_LIBRARY"

for lang in "${langs[@]}"; do
  case $lang in
  rust)
    # Its own crate, lock and target dir: the binding's Cargo.lock and MSRV
    # stay as they are. The newest cargo on the machine.
    (cd bindings/rust/peers-bench && cargo build --release --locked -q)
    echo "VERSION	rust	governor $(sed -n '/^name = "governor"$/{n;s/version = "\(.*\)"/\1/p}' bindings/rust/peers-bench/Cargo.lock), $(rustc --version)" >> "$out"
    PEERS_BATCHES=${PEERS_BATCHES:-250} bindings/rust/peers-bench/target/release/ratetrack-peers-bench | tee -a "$out" ;;
  go)
    (cd bindings/go/peersbench && GOTOOLCHAIN=local go build -o "$venv/peersbench" .)
    echo "VERSION	go	$(grep -o 'golang.org/x/time v[^ ]*' bindings/go/peersbench/go.mod), $(go version | cut -d' ' -f3)" >> "$out"
    PEERS_BATCHES=${PEERS_BATCHES:-100} "$venv/peersbench" | tee -a "$out" ;;
  node)
    # The binding's own dependencies (koffi), then the peers' in their own dir.
    (cd bindings/node && [[ -d node_modules/koffi ]] || npm ci --no-audit --no-fund --loglevel=error)
    (cd bindings/node/bench/peers && npm ci --no-audit --no-fund --loglevel=error)
    echo "VERSION	node	$(cd bindings/node/bench/peers && node -p "['limiter', 'rate-limiter-flexible'].map((p) => p + ' ' + JSON.parse(require('fs').readFileSync('node_modules/' + p + '/package.json')).version).join(', ')"), node $(node --version)" >> "$out"
    (cd bindings/node/bench/peers && PEERS_BATCHES=${PEERS_BATCHES:-25} node peers.js) | tee -a "$out" ;;
  python)
    python3 -m venv "$venv/py"
    "$venv/py/bin/pip" install -q --disable-pip-version-check -r bindings/python/bench/peers-requirements.txt
    # ratetrack._fast, as the wheel has it (the package itself comes from src/)
    bindings/python/build-fast.sh "$venv/py/bin/python" "$venv/fast" \
      "$("$venv/py/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    PYTHONPATH="$root/bindings/python/src" PEERS_BATCHES=${PEERS_BATCHES:-10} \
      "$venv/py/bin/python" bindings/python/bench/peers.py | tee -a "$out"
    sed -i "s/^VERSION	python	.*/&, $("$venv/py/bin/python" --version)/" "$out" ;;
  *) echo "bench-peers.sh: unknown language $lang (rust, go, node, python)" >&2; exit 2 ;;
  esac
done

python3 - "$out" <<'PY'
import statistics, sys
rows, versions = [], {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] == "CASE":
        rows.append((f[1], f[2], f[3], [float(x) for x in f[4].split(",")]))
    elif f[0] == "VERSION":
        versions[f[1]] = f[2]
def fmt(x):
    return f"{x:,.0f}" if x >= 1000 else f"{x:.1f}"
print()
print("ns per decision: median of the rounds (range); x libratetrack: median of the per-round ratios (range)")
for lang in dict.fromkeys(r[0] for r in rows):
    print(f"\n{lang}: {versions.get(lang, '')}")
    print(f"{'':10} {'case':46} {'ns/decision':>24} {'x libratetrack':>20}")
    for kind in ("admitting", "refusing"):
        cases = [r for r in rows if r[0] == lang and r[1] == kind]
        ref = cases[0][3]
        for _, _, name, v in cases:
            ratios = [a / b for a, b in zip(v, ref)]
            ns = f"{fmt(statistics.median(v))} ({fmt(min(v))}-{fmt(max(v))})"
            x = "1.00" if v is ref else f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"{kind:10} {name:46} {ns:>24} {x:>20}")
PY
