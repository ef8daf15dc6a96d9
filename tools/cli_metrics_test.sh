#!/usr/bin/env bash
# ratetrack metrics: the exposition text (checked with promtool when it is
# installed, and always with a small format check here), and the HTTP server
# of --listen: GET /metrics, 404 elsewhere, a clean stop on SIGTERM and SIGINT.
#   tools/cli_metrics_test.sh path/to/ratetrack
set -euo pipefail
cli=$1
name="cli-metrics-$$"
tmp=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill -KILL "$server" 2> /dev/null
  rm -f /dev/shm/ratetrack.$name; rm -rf "$tmp"
}
trap cleanup EXIT
unset RATETRACK_BACKEND RATETRACK_TIER RATETRACK_CONFIG
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v curl > /dev/null || { echo "SKIP: curl is not installed (scripts/install-deps.sh installs it)"; exit 0; }

export RATETRACK_BACKEND="shm:$name"
echo '{"limits": {"acme/tiny": {"rpm": 2, "tpm": 1000}}}' > "$tmp/config.json"
RATETRACK_CONFIG="$tmp/config.json" "$cli" acquire acme/tiny 400 > /dev/null
"$cli" record openai/gpt-4o-mini 7

# Format: every sample's family has HELP and TYPE first; samples are
# name{label="value",...} number.
check_format() {
  awk '
    /^# HELP / { help[$3] = 1; next }
    /^# TYPE / { if (!($3 in help)) { print "TYPE before HELP: " $3; bad = 1 }
                 if ($4 != "gauge" && $4 != "counter") { print "type: " $0; bad = 1 }
                 type[$3] = 1; next }
    /^#/ { next }
    {
      if ($0 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+]?[0-9.eE+-]+$/) {
        print "bad sample: " $0; bad = 1; next }
      n = $0; sub(/[{ ].*/, "", n)
      if (!(n in type)) { print "no TYPE for " n; bad = 1 }
      samples++
    }
    END { if (samples == 0) { print "no samples"; bad = 1 } exit bad }' "$1"
}
"$cli" metrics > "$tmp/metrics.txt"
check_format "$tmp/metrics.txt" || fail "exposition format"
grep -q '^ratetrack_window_usage{model="acme/tiny",window="tokens_per_minute"} 400$' "$tmp/metrics.txt" || fail "usage sample"
# no configuration here: the limits the segment holds (tier1's, stored by record)
grep -q '^ratetrack_window_limit{model="openai/gpt-4o-mini",window="requests_per_minute"} 500$' "$tmp/metrics.txt" || fail "limit sample"
if command -v promtool > /dev/null; then
  promtool check metrics < "$tmp/metrics.txt" || fail "promtool check metrics"
else
  # scripts/install-deps.sh installs it: its absence is a broken setup, not
  # a reason to pass quietly.
  fail "promtool (Debian package prometheus) is not installed: run scripts/install-deps.sh"
fi

# --listen: port 0 picks a free port, announced on stderr
start() {
  # Emptied here, not by the background job's own redirection: that one
  # happens in the child, possibly after the loop below has read the
  # previous server's "listening on" line.
  : > "$tmp/server.err"
  "$cli" metrics --listen 127.0.0.1:0 2>> "$tmp/server.err" &
  server=$!
  local i
  for i in $(seq 50); do grep -q "listening on" "$tmp/server.err" && break; sleep 0.1; done
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/server.err")
  [ -n "$url" ] || { cat "$tmp/server.err"; fail "server did not start"; }
}
stop() {  # stop SIGNAL: the server must exit 0 within 3 s
  kill -"$1" "$server"
  local i
  for i in $(seq 30); do kill -0 "$server" 2> /dev/null || break; sleep 0.1; done
  ! kill -0 "$server" 2> /dev/null || fail "server still running after SIG$1"
  wait "$server" || fail "server exited $? after SIG$1"
  server=""
  grep -q "stopped" "$tmp/server.err" || fail "no clean stop"
}
start
curl -sS -D "$tmp/headers" -o "$tmp/scrape.txt" "$url"
grep -q "^HTTP/1.1 200" "$tmp/headers" || fail "GET /metrics: not 200"
grep -qi "^content-type: text/plain; version=0.0.4" "$tmp/headers" || fail "content type"
check_format "$tmp/scrape.txt" || fail "scraped format"
grep -q '^ratetrack_window_usage{model="acme/tiny",window="requests_per_minute"} 1$' "$tmp/scrape.txt" || fail "scraped sample"
RATETRACK_CONFIG="$tmp/config.json" "$cli" acquire acme/tiny 1 > /dev/null
curl -sS -o "$tmp/scrape2.txt" "$url"
grep -q '^ratetrack_window_usage{model="acme/tiny",window="requests_per_minute"} 2$' "$tmp/scrape2.txt" || fail "second scrape is not fresh"
[ "$(curl -s -o /dev/null -w '%{http_code}' "${url%/metrics}/")" = 404 ] || fail "/ is not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' "${url}x")" = 404 ] || fail "/metricsx is not 404"
stop TERM
start
curl -sS "$url" > /dev/null
stop INT
echo "ratetrack metrics: ok"
