#!/usr/bin/env bash
# The cross-process demo: agents written in C, Python and Node.js run as three
# separate processes and spend ONE budget of openai/gpt-4o-mini (60 requests
# per minute here) through the shared-memory backend: RATETRACK_BACKEND=shm:NAME
# puts each process's GLOBAL tracker in /dev/shm/ratetrack.NAME, with no code
# change. LLM calls are simulated (no network): acquire with an estimate
# without waiting, "call", settle with the real token count. A fresh process
# then reads the shared stats: 60 of 60 requests per minute, spent by all three.
#
#   cmake --build build && scripts/demo-shm.sh
#
# Uses build/libratetrack.so.0 (or $RATETRACK_LIBRARY) and
# build/examples/shm_agent (compiled here from examples/shm_agent.c if
# missing). Exits 0 only if the combined usage equals the limit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

lib=${RATETRACK_LIBRARY:-$root/build/libratetrack.so.0}
if [[ ! -f "$lib" ]]; then
  echo "demo-shm.sh: $lib not found: build the library first (cmake --build build)" >&2
  exit 2
fi
libdir=$(cd "$(dirname "$lib")" && pwd)
export RATETRACK_LIBRARY=$libdir/$(basename "$lib")

MODEL=openai/gpt-4o-mini
RPM=60
CALLS=40 # per agent: 3 x 40 attempts for 60 slots
name=demo-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/demo-shm.XXXXXX")
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -f "/dev/shm/ratetrack.$name"
  rm -rf "$work"
}
trap cleanup EXIT

# ------------------------------------------------------------ the three agents
c_agent=$root/build/examples/shm_agent
if [[ ! -x "$c_agent" ]]; then
  c_agent=$work/shm_agent
  "${CC:-cc}" -std=c99 -O2 -I include examples/shm_agent.c "$RATETRACK_LIBRARY" \
    -Wl,-rpath,"$libdir" -o "$c_agent"
fi
if [[ ! -d bindings/node/node_modules/koffi ]]; then
  (cd bindings/node && npm ci --loglevel=error --no-audit --no-fund)
fi

cat > "$work/agent.py" <<'PY'
"""Python agent: spends openai/gpt-4o-mini through the GLOBAL tracker."""
import os, random, sys, time
import ratetrack

MODEL = "openai/gpt-4o-mini"
calls, start = int(sys.argv[1]), sys.argv[2]
tracker = ratetrack.global_tracker()  # shm: from RATETRACK_BACKEND
deadline = time.monotonic() + 10
while not os.path.exists(start):
    if time.monotonic() > deadline:
        sys.exit("python agent: start file did not appear")
    time.sleep(0.001)
admitted = used = 0
first_retry = None
for _ in range(calls):
    prompt, max_tokens = random.randint(100, 300), 256
    result = tracker.try_acquire_grant(MODEL, prompt + max_tokens)  # never waits
    if not result:
        first_retry = first_retry or result.retry_after
        time.sleep(0.001)  # a real agent would queue the step; this one skips it
        continue
    time.sleep(random.randint(1, 3) / 1000)  # the "request"
    actual = prompt + random.randint(50, 250)
    tracker.settle(result.grant, actual)  # book the real token count
    admitted, used = admitted + 1, used + actual
note = f" (refused after that: retry in {first_retry:.1f} s)" if first_retry else ""
print(f"python: admitted {admitted} of {calls} calls, {used} tokens used{note}")
PY

cat > "$work/agent.js" <<'JS'
'use strict';
// Node.js agent: spends openai/gpt-4o-mini through the GLOBAL tracker.
const fs = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');
const rt = require(process.env.RT_NODE_BINDING);

const MODEL = 'openai/gpt-4o-mini';
const rand = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));

async function main() {
  const calls = Number(process.argv[2]), start = process.argv[3];
  const tracker = rt.globalTracker(); // shm: from RATETRACK_BACKEND
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(start)) {
    if (Date.now() > deadline) throw new Error('start file did not appear');
    await sleep(1);
  }
  let admitted = 0, used = 0, firstRetryMs = 0;
  for (let i = 0; i < calls; i++) {
    const prompt = rand(100, 300), maxTokens = 256;
    const { ok, retryAfterMs, grant } = tracker.tryAcquireGrant(MODEL, prompt + maxTokens);
    if (!ok) {
      firstRetryMs ||= retryAfterMs;
      await sleep(1); // a real agent would queue the step; this one skips it
      continue;
    }
    await sleep(rand(1, 3)); // the "request"
    const actual = prompt + rand(50, 250);
    tracker.settle(grant, actual); // book the real token count
    admitted++;
    used += actual;
  }
  const note = firstRetryMs ? ` (refused after that: retry in ${(firstRetryMs / 1000).toFixed(1)} s)` : '';
  console.log(`node: admitted ${admitted} of ${calls} calls, ${used} tokens used${note}`);
}
main().catch((err) => { console.error(`node agent: ${err.message}`); process.exitCode = 1; });
JS

cat > "$work/report.py" <<'PY'
"""A fresh process reads the shared stats and checks them against the agents'."""
import sys
import ratetrack

MODEL = "openai/gpt-4o-mini"
requests, tokens = int(sys.argv[1]), int(sys.argv[2])
stats = ratetrack.global_tracker().stats()
print(f"shared stats of {MODEL} (tier {stats['tier']}, backend {stats['backend']}),")
print("read by a fresh Python process:")
for window, w in stats["models"][MODEL].items():
    if w["limit"] is None:
        print(f"  {window:<20} {w['current']:>6} (no limit)")
    else:
        print(f"  {window:<20} {w['current']:>6} of {w['limit']:<6} "
              f"remaining {w['remaining']:<6} {w['usage_percent']:g}%")
rpm, tpm = stats["models"][MODEL]["requests_per_minute"], stats["models"][MODEL]["tokens_per_minute"]
ok = rpm["current"] == rpm["limit"] == requests and tpm["current"] == tokens
if not ok:
    print(f"MISMATCH: agents report {requests} requests and {tokens} tokens; "
          f"the segment holds {rpm['current']} of {rpm['limit']} requests, {tpm['current']} tokens")
sys.exit(0 if ok else 1)
PY

# ------------------------------------------------------------------- the run
cat > "$work/config.json" <<JSON
{"tier": "tier1", "limits": {"$MODEL": {"rpm": $RPM, "tpm": 40000}}}
JSON
export RATETRACK_BACKEND=shm:$name RATETRACK_CONFIG=$work/config.json
export PYTHONPATH=$root/bindings/python/src${PYTHONPATH:+:$PYTHONPATH}
export RT_NODE_BINDING=$root/bindings/node
unset RATETRACK_TIER
rm -f "/dev/shm/ratetrack.$name"
python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')

echo "libratetrack demo: three agents in three languages, as three processes, share"
echo "one budget of $MODEL ($RPM requests per minute) through"
echo "RATETRACK_BACKEND=$RATETRACK_BACKEND (/dev/shm/ratetrack.$name)."
echo "Each agent tries $CALLS simulated calls at once, without waiting:"

start=$work/start
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  "$c_agent" "$CALLS" "$start" > "$work/c.out" & pids+=($!)
"$python" "$work/agent.py" "$CALLS" "$start" > "$work/python.out" & pids+=($!)
node "$work/agent.js" "$CALLS" "$start" > "$work/node.out" & pids+=($!)

# Start them together, once each has opened the segment (at most 10 s).
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
  ready=0
  for pid in "${pids[@]}"; do
    if grep -qE ' /dev/shm/\.?ratetrack\.' "/proc/$pid/maps" 2>/dev/null ||
      ! kill -0 "$pid" 2>/dev/null; then
      ready=$((ready + 1))
    fi
  done
  ((ready == ${#pids[@]})) && break
  sleep 0.005
done
touch "$start"

requests=0 tokens=0 failed=0 langs=0
for i in 0 1 2; do
  lang=$(echo c python node | cut -d' ' -f$((i + 1)))
  rc=0
  wait "${pids[$i]}" || rc=$?
  line=$(cat "$work/$lang.out")
  if [[ $rc -eq 0 && "$line" =~ ^$lang:\ admitted\ ([0-9]+)\ of\ [0-9]+\ calls,\ ([0-9]+)\ tokens ]]; then
    echo "  pid ${pids[$i]} $line"
    requests=$((requests + BASH_REMATCH[1]))
    tokens=$((tokens + BASH_REMATCH[2]))
    ((BASH_REMATCH[1] > 0)) && langs=$((langs + 1))
  else
    echo "  pid ${pids[$i]} $lang agent FAILED (exit $rc): $line"
    failed=1
  fi
done
pids=()
echo "together: $requests requests, $tokens tokens"
echo

rc=0
"$python" "$work/report.py" "$requests" "$tokens" || rc=$?
echo
if [[ $failed -eq 0 && $rc -eq 0 ]]; then
  echo "3 languages, 3 processes, one budget: $requests of $RPM requests per minute" \
    "($langs of the 3 agents got some)"
  exit 0
fi
echo "FAILED: the combined usage is not the limit ($requests of $RPM requests per minute)"
exit 1
