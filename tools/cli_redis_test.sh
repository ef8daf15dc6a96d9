#!/usr/bin/env bash
# ratetrack against Redis: a real redis-server on a free loopback port;
# acquire/settle through the command, seen by stats (table, JSON with
# backend_state) and metrics; limited at the limit; 69 when Redis is gone
# with on_error=closed.
#   tools/cli_redis_test.sh path/to/ratetrack
set -euo pipefail
cli=$1
command -v redis-server > /dev/null || { echo "SKIP: redis-server is not installed"; exit 0; }
tmp=$(mktemp -d)
redis=""
cleanup() { [ -n "$redis" ] && kill -KILL "$redis" 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
unset RATETRACK_BACKEND RATETRACK_TIER RATETRACK_CONFIG
fail() { echo "FAIL: $*" >&2; exit 1; }

. "$(dirname "$0")/redis_server.sh"
start_redis_server "$tmp" --port "{port}"

# 5 s: the default 50 ms is for production; on a loaded machine a call may
# take longer, and one that timed out is on_error's to decide (a settle of a
# grant made in Redis is then not applied), which is not what this checks.
url="redis://127.0.0.1:$port/0?prefix=cli$$&timeout_ms=5000"
echo '{"limits": {"acme/tiny": {"rpm": 2, "tpm": 1000}}}' > "$tmp/config.json"
export RATETRACK_CONFIG="$tmp/config.json"
out=$("$cli" acquire acme/tiny 600 --backend "$url") || fail "acquire 1"
[[ "$out" =~ ^grant\ [1-9][0-9]*$ ]] || fail "acquire 1: '$out'"
# Settled by another process: grants made in Redis settle anywhere on it.
"$cli" settle acme/tiny "${out#grant }" 600 400 --backend "$url" > /dev/null || fail "settle"
"$cli" acquire acme/tiny 100 --backend "$url" > /dev/null || fail "acquire 2"
set +e; out=$("$cli" acquire acme/tiny 1 --backend "$url"); rc=$?; set -e
[ "$rc" -eq 75 ] || fail "acquire 3: exit $rc, want 75"
[[ "$out" =~ ^retry_after_ms\ [1-9][0-9]*$ ]] || fail "acquire 3: '$out'"

"$cli" stats --backend "$url" > "$tmp/stats"
grep -q "^backend redis://127.0.0.1:$port/0?prefix=cli$$" "$tmp/stats" || { cat "$tmp/stats"; fail "stats: backend"; }
grep -q "^backend state: connected, on_error=local, 0 errors" "$tmp/stats" || { cat "$tmp/stats"; fail "stats: backend state"; }
grep -qE "^acme/tiny +rpm +\[#{20}\] 100\.0% +2 +2 +0$" "$tmp/stats" || { cat "$tmp/stats"; fail "stats: rpm"; }
grep -qE "^ +tpm +\[#{10}-{10}\]  50\.0% +500 +1000 +500$" "$tmp/stats" || { cat "$tmp/stats"; fail "stats: tpm"; }
"$cli" stats --backend "$url" --json > "$tmp/stats.json"
grep -q '"backend_state":{"connected":true' "$tmp/stats.json" || fail "stats --json: backend_state"
grep -q '"acme/tiny":{"requests_per_minute":{"current":2,"limit":2,"remaining":0' "$tmp/stats.json" || fail "stats --json: acme/tiny"
"$cli" metrics --backend "$url" > "$tmp/metrics"
grep -q '^ratetrack_window_usage{model="acme/tiny",window="tokens_per_minute"} 500$' "$tmp/metrics" || fail "metrics"

kill -TERM "$redis"; wait "$redis" 2> /dev/null || true; redis=""
set +e; "$cli" acquire acme/tiny 1 --backend "redis://127.0.0.1:$port/0?on_error=closed&timeout_ms=50" 2> "$tmp/err"; rc=$?; set -e
[ "$rc" -eq 69 ] || fail "Redis gone, on_error=closed: exit $rc, want 69"
"$cli" stats --backend "$url" > "$tmp/stats"
grep -q "^backend state: DISCONNECTED" "$tmp/stats" || { cat "$tmp/stats"; fail "stats: DISCONNECTED"; }
echo "ratetrack with Redis: ok"
