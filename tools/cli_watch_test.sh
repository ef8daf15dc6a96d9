#!/usr/bin/env bash
# ratetrack watch on a terminal (a pseudo-terminal from script(1)): the
# alternate screen, the bars, yellow past 80% and red at 100%, and the
# terminal restored after SIGINT and after SIGTERM.
#   tools/cli_watch_test.sh path/to/ratetrack
set -euo pipefail
cli=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
command -v script > /dev/null || { echo "SKIP: script(1) (util-linux) is not installed"; exit 0; }
name="cli-watch-$$"
tmp=$(mktemp -d)
trap 'rm -f /dev/shm/ratetrack.$name; rm -rf "$tmp"' EXIT
unset RATETRACK_BACKEND RATETRACK_TIER RATETRACK_CONFIG NO_COLOR
fail() { echo "FAIL: $*" >&2; [ -f "$tmp/out" ] && cat -v "$tmp/out" | tail -20 >&2; exit 1; }

echo '{"limits": {"acme/tiny": {"rpm": 2, "tpm": 1000}}}' > "$tmp/config.json"
export RATETRACK_CONFIG="$tmp/config.json"
"$cli" acquire acme/tiny 400 --backend "shm:$name" > /dev/null
"$cli" acquire acme/tiny 450 --backend "shm:$name" > /dev/null   # rpm 2/2: red; tpm 850/1000: yellow
"$cli" record openai/gpt-4o-mini 1 --backend "shm:$name"          # 0.2%: no colour

# run SIGNAL: starts watch in a pseudo-terminal, waits for a frame, sends SIGNAL.
run() {
  rm -f "$tmp/pid" "$tmp/out" "$tmp/rc"
  (set +e; script -qfec "sh -c 'echo \$\$ > $tmp/pid; exec $cli watch --backend shm:$name --interval 0.1'" \
      /dev/null < /dev/null > "$tmp/out" 2>&1; echo $? > "$tmp/rc") &
  local i
  for i in $(seq 100); do
    [ -s "$tmp/pid" ] && [ "$(grep -ac 'ratetrack watch: every' "$tmp/out" 2>/dev/null)" -ge 2 ] && break
    sleep 0.1
  done
  [ -s "$tmp/pid" ] || fail "watch did not start"
  kill -"$1" "$(cat "$tmp/pid")"
  for i in $(seq 50); do [ -s "$tmp/rc" ] && break; sleep 0.1; done
  [ -s "$tmp/rc" ] || { kill -KILL "$(cat "$tmp/pid")" 2> /dev/null; fail "watch did not stop on SIG$1"; }
  [ "$(cat "$tmp/rc")" = 0 ] || fail "watch exited $(cat "$tmp/rc") on SIG$1"
}

esc=$'\033'
for sig in INT TERM; do
  run "$sig"
  out=$(cat "$tmp/out")
  [[ "$out" == "${esc}[?1049h${esc}[?25l"* ]] || fail "SIG$sig: does not start with alternate screen + hidden cursor"
  [[ "$out" == *"${esc}[?25h${esc}[?1049l" ]] || fail "SIG$sig: does not end with show cursor + leave alternate screen"
  grep -aqE "^acme/tiny +rpm +${esc}\[31m\[#{20}\] 100\.0%${esc}\[0m +2 +2 +0" "$tmp/out" || fail "no red bar"
  grep -aqE "^ +tpm +${esc}\[33m\[#{17}-{3}\]  85\.0%${esc}\[0m +850 +1000 +150" "$tmp/out" || fail "no yellow bar"
  grep -aqE "^openai/gpt-4o-mini +rpm +\[#-{19}\]   0\.2% +1 +500 +499" "$tmp/out" || fail "no plain bar"
done
# NO_COLOR: the screen handling stays, the colours go
NO_COLOR=1 run INT
! grep -aq "${esc}\[3[13]m" "$tmp/out" || fail "colours with NO_COLOR"
echo "ratetrack watch on a terminal: ok"
