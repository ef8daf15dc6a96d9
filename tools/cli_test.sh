#!/usr/bin/env bash
# The ratetrack command: help and usage errors of every subcommand, limits,
# acquire/record/settle exit codes against a shm: segment, stats (table and
# JSON), watch's plain snapshots, metrics printed once, shm list/remove.
#   tools/cli_test.sh path/to/ratetrack path/to/seed_scenario
set -euo pipefail
cli=$1 seed=$2
name="cli-test-$$"
tmp=$(mktemp -d)
trap 'rm -f /dev/shm/ratetrack.$name /dev/shm/ratetrack.$name-2; rm -rf "$tmp"' EXIT
unset RATETRACK_BACKEND RATETRACK_TIER RATETRACK_CONFIG NO_COLOR
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect CODE CMD...: runs CMD, output in $tmp/out and $tmp/err, checks the exit code.
expect() {
  local want=$1; shift
  set +e; "$@" > "$tmp/out" 2> "$tmp/err"; local got=$?; set -e
  [ "$got" -eq "$want" ] || { cat "$tmp/out" "$tmp/err" >&2; fail "$*: exit $got, want $want"; }
}
has() { grep -qE -- "$1" "$tmp/${2:-out}" || { cat "$tmp/${2:-out}" >&2; fail "no /$1/ in ${2:-out}"; }; }

# --- help and usage
expect 0 "$cli" --help; has "shm +list or remove"; has "acquire"
for c in limits stats watch acquire record settle metrics shm version; do
  expect 0 "$cli" "$c" --help; has "^usage: ratetrack $c"
done
expect 0 "$cli" acquire --help; has "75 +limited"; has "65 +data error"; has "78 +configuration"
"$cli" version | grep -q "^ratetrack [0-9]"
expect 64 "$cli"
expect 64 "$cli" bogus
expect 64 "$cli" limits --bogus; has "^usage: ratetrack limits" err
expect 64 "$cli" limits --tier
expect 64 "$cli" stats extra
expect 64 "$cli" watch --interval 0
expect 64 "$cli" watch --count x
expect 64 "$cli" acquire
expect 64 "$cli" acquire m 12x
expect 64 "$cli" acquire m 1 2
expect 64 "$cli" acquire m --wait=soon
expect 64 "$cli" record m -5
expect 64 "$cli" settle m 1 2
expect 64 "$cli" settle m 0 1 1
expect 64 "$cli" settle m 1 2 3 --granted-output 4
expect 64 "$cli" metrics --listen-any
expect 64 "$cli" metrics --listen 10.1.2.3:9090
expect 64 "$cli" metrics --listen nowhere:80
expect 64 "$cli" version extra
expect 64 "$cli" shm remove
expect 64 "$cli" shm remove "../x"
expect 64 "$cli" shm remove "$name"

# --- limits
expect 0 "$cli" limits --tier tier1 --provider openai
has "^MODEL +rpm +tpm +rpd +tpd +itpm +otpm"
has "^openai/gpt-4o-mini +500 +200000 +10000 +- +- +-$"
! grep -q "^anthropic/" "$tmp/out" || fail "--provider openai lists anthropic"
expect 0 "$cli" limits --tier tier2 --provider openai; has "^openai/gpt-4o-mini +5000 +2000000 "
RATETRACK_TIER=tier2 expect 0 "$cli" limits --provider openai; has "^openai/gpt-4o-mini +5000 "
expect 0 "$cli" limits --provider anthropic; has "^anthropic/.* +50 .* +50000 +10000"
expect 0 "$cli" limits --tier tier1 --provider openai --json
has '^\{"tier":"tier1","models":\{"openai/'
has '"openai/gpt-4o-mini":\{"requests_per_minute":500,"tokens_per_minute":200000,"requests_per_day":10000,"tokens_per_day":null\}'
expect 78 "$cli" limits --tier no-such-tier; has "unknown tier" err
echo '{"limits": {"acme/tiny": {"rpm": 2, "tpm": 1000}, "acme/win": {"windows": [{"unit": "requests", "limit": 7, "seconds": 2}]}}}' > "$tmp/config.json"
RATETRACK_CONFIG="$tmp/config.json" expect 0 "$cli" limits --provider acme
has "^acme/tiny +2 +1000 +- +- +- +- +-$"; has "r/2s"; has "^acme/win +- +- +- +- +- +- +7$"
echo '{"limits": ' > "$tmp/bad.json"
expect 78 "$cli" limits --config "$tmp/bad.json"; has "bad.json" err

# --- acquire, record, settle on a segment with a tiny limit (the agents'
# configuration comes from RATETRACK_CONFIG, as for them)
export RATETRACK_CONFIG="$tmp/config.json" RATETRACK_BACKEND="shm:$name"
expect 0 "$cli" acquire acme/tiny 400; has "^grant [1-9][0-9]*$"
grant=$(sed 's/^grant //' "$tmp/out")
expect 0 "$cli" acquire acme/tiny 450; has "^grant [1-9][0-9]*$"
expect 75 "$cli" acquire acme/tiny 1; has "^retry_after_ms [1-9][0-9]*$"
expect 75 "$cli" acquire acme/tiny 1 --wait=0.2; has "^retry_after_ms [1-9][0-9]*$"
expect 65 "$cli" acquire acme/tiny 5000; has "TOO_LARGE" err
expect 65 "$cli" settle acme/tiny "$grant" 399 100; has "RT_E_INVALID" err
expect 0 "$cli" settle acme/tiny "$grant" 400 200
expect 0 "$cli" record openai/gpt-4o-mini 50
expect 0 "$cli" acquire openai/gpt-4o-mini 10 --output-tokens 20 --wait=1; has "^grant "
expect 78 "$cli" acquire acme/tiny 1 --config /dev/null/none
# disagreeing limits: 78 for acquire, 1 for stats
echo '{"limits": {"acme/tiny": {"rpm": 3}}}' > "$tmp/other.json"
expect 78 "$cli" acquire acme/tiny 1 --config "$tmp/other.json"; has "holds" err
expect 1 "$cli" stats --config "$tmp/other.json"; has "holds" err
expect 69 "$cli" acquire acme/tiny 1 --backend "redis://127.0.0.1:1/?on_error=closed&timeout_ms=20"
# a backend URL that does not parse: its reason, not the hint about differing limits
expect 78 "$cli" acquire acme/tiny 1 --backend "redis://127.0.0.1:1/?connections=0"
has "connections must be from 1 to 64" err
if grep -q "first user set" "$tmp/err"; then fail "the limits hint for a bad backend URL"; fi

# a password never reaches the terminal, whatever else in the URL is wrong
expect 78 "$cli" acquire acme/tiny 1 --backend "redis://u:Qz7?Wv4@127.0.0.1:bad"
! grep -qE "Qz7|Wv4" "$tmp/err" || fail "the password is printed: $(cat "$tmp/err")"
has "port 'bad'" err
expect 69 "$cli" acquire acme/tiny 1 --backend "redis://u:Qz7?Wv4@127.0.0.1:1/?on_error=closed&timeout_ms=20"
! grep -qE "Qz7|Wv4" "$tmp/out" "$tmp/err" || fail "the password is printed: $(cat "$tmp/err")"
# a name that is not UTF-8, or holds an escape sequence, is refused (65: bad data)
expect 65 "$cli" record $'acme/\e[2Jgone' 1; has "control character" err
! grep -q $'\033' "$tmp/err" || fail "an escape sequence reached the terminal"
expect 65 "$cli" record $'acme/caf\xe9' 1; has "not UTF-8" err

# --- stats: the segment as the agents left it (tiny rpm 2/2, tpm 650/1000)
check_stats() {
  has "^backend shm:$name"
  has "^acme/tiny +rpm +\[####################\] 100\.0% +2 +2 +0$"
  has "^ +tpm +\[#############-------\]  65\.0% +650 +1000 +350$"
  has "^openai/gpt-4o-mini +rpm +\[#-------------------\] +0\.4% +2 +500 +498$"
  ! grep -q "anthropic/" "$tmp/out" || fail "stats lists models without usage"
}
expect 0 "$cli" stats; check_stats
has "tier tier1"
unset RATETRACK_CONFIG  # no configuration: the segment's own limits
expect 0 "$cli" stats; check_stats; has "limits as stored in the backend"
expect 0 "$cli" stats --provider acme; ! grep -q "openai/" "$tmp/out" || fail "--provider acme"
expect 0 "$cli" stats --json
has '"backend":"shm:'"$name"'"'
has '"acme/tiny":\{"requests_per_minute":\{"current":2,"limit":2,"remaining":0,"usage_percent":100\.0\},"tokens_per_minute":\{"current":650,"limit":1000,"remaining":350'
unset RATETRACK_BACKEND
expect 0 "$cli" stats --backend "shm:$name" --all; has "^acme/tiny"
expect 0 "$cli" stats; has "in-process backend: this process's usage only"; has "no usage"

# --- watch without a terminal: N plain snapshots, no escape codes
expect 0 "$cli" watch --backend "shm:$name" --count 2 --interval 0.05
[ "$(grep -c '^--- ratetrack watch' "$tmp/out")" -eq 2 ] || fail "watch: want 2 snapshots"
[ "$(grep -cE '^acme/tiny +rpm +\[#{20}\]' "$tmp/out")" -eq 2 ] || fail "watch: bars"
! grep -q $'\033' "$tmp/out" || fail "watch: escape codes without a terminal"

# --- metrics, printed once
expect 0 "$cli" metrics --backend "shm:$name"
has '^ratetrack_window_usage\{model="acme/tiny",window="requests_per_minute"\} 2$'
has '^ratetrack_window_remaining\{model="acme/tiny",window="tokens_per_minute"\} 350$'

# --- shm list and remove
RATETRACK_BACKEND="shm:$name-2" "$seed" > /dev/null
"$cli" shm list | grep -E "^$name-2 +0600 .* ok$" > /dev/null || { "$cli" shm list; fail "list: $name-2 missing"; }
"$cli" shm list --json | grep -q "\"name\":\"$name-2\""
"$cli" shm remove "$name-2" | grep -q "removed $name-2"
! "$cli" shm list | grep -q "^$name-2 " || fail "still listed"
"$cli" shm remove "$name" > /dev/null
echo "ratetrack command: ok"
