#!/usr/bin/env bash
# ratetrack over rediss://: a redis-server with a TLS port only, on a free
# loopback port, with a CA and a certificate made here with openssl; the
# command admits up to the limit, verified against that CA, and a CA that is
# not given is a configuration error (exit 78) saying "certificate"; where
# OpenSSL cannot be loaded, rediss:// is exit 78 saying what to install. Run on
# the build's command (ctest) and on the release packages' (package_test.sh):
# the library loads OpenSSL at run time, so this is what a user of the .deb,
# the tarball or the wheel gets.
#   tools/cli_rediss_test.sh path/to/ratetrack
set -euo pipefail
cli=$1
command -v redis-server > /dev/null || { echo "SKIP: redis-server is not installed"; exit 0; }
command -v openssl > /dev/null || { echo "SKIP: openssl is not installed"; exit 0; }
tmp=$(mktemp -d)
redis=""
cleanup() {
  [ -n "$redis" ] && { kill -KILL "$redis"; wait "$redis"; } 2> /dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
unset RATETRACK_BACKEND RATETRACK_TIER RATETRACK_CONFIG
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "$tmp" && {
  key="-newkey rsa:2048 -nodes"
  openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=rt-cli-ca &&
  openssl req $key -keyout server.key -out server.csr -subj /CN=localhost &&
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
    -days 2 -extfile server.ext; } > openssl.log 2>&1) || { cat "$tmp/openssl.log"; fail "openssl"; }

. "$(dirname "$0")/redis_server.sh"
start_redis_server "$tmp" --port 0 --tls-port "{port}" --tls-cert-file "$tmp/server.pem" \
  --tls-key-file "$tmp/server.key" --tls-ca-cert-file "$tmp/ca.pem" --tls-auth-clients no

url="rediss://127.0.0.1:$port/0?prefix=cli$$&timeout_ms=5000&on_error=closed&tls_ca_file=$tmp/ca.pem"
echo '{"limits": {"acme/tiny": {"rpm": 2}}}' > "$tmp/config.json"
export RATETRACK_CONFIG="$tmp/config.json"
for i in 1 2; do
  out=$("$cli" acquire acme/tiny --backend "$url") || fail "acquire $i over rediss://"
  [[ "$out" =~ ^grant\ [1-9][0-9]*$ ]] || fail "acquire $i: '$out'"
done
set +e; out=$("$cli" acquire acme/tiny --backend "$url"); rc=$?; set -e
[ "$rc" -eq 75 ] || fail "acquire 3 over rediss://: exit $rc, want 75 (limited)"
"$cli" stats --backend "$url" > "$tmp/stats"
grep -q "^backend state: connected" "$tmp/stats" || { cat "$tmp/stats"; fail "stats: backend state"; }
# The system's CAs do not know the test's: refused, saying why.
set +e
"$cli" acquire acme/tiny --backend "rediss://127.0.0.1:$port/0?timeout_ms=5000" 2> "$tmp/err"
rc=$?
set -e
[ "$rc" -eq 78 ] || { cat "$tmp/err"; fail "no CA: exit $rc, want 78 (configuration)"; }
grep -q "certificate" "$tmp/err" || { cat "$tmp/err"; fail "no CA: no word of the certificate"; }
# Without OpenSSL (libssl.so.3 hidden under /dev/null in a mount namespace
# of its own, where unshare can make one: root): exit 78 under every
# on_error, saying what to install.
ssl=$(/sbin/ldconfig -p | sed -n 's/.*libssl\.so\.3 (.*x86-64.*) => \(.*\)/\1/p' | head -1)
hidden=""
if [ -n "$ssl" ] && unshare -m true 2> /dev/null; then
  for policy in closed open local; do
    set +e
    unshare -m sh -c 'mount --bind /dev/null "$1" && shift && exec "$@"' sh "$ssl" \
      "$cli" acquire acme/tiny --backend "${url/on_error=closed/on_error=$policy}" 2> "$tmp/err"
    rc=$?
    set -e
    [ "$rc" -eq 78 ] || { cat "$tmp/err"; fail "no OpenSSL, on_error=$policy: exit $rc, want 78"; }
    grep -q "rediss:// needs OpenSSL's libssl.so.3 (Debian/Ubuntu: apt-get install libssl3" "$tmp/err" ||
      { cat "$tmp/err"; fail "no OpenSSL, on_error=$policy: not the advice"; }
  done
  hidden="; with libssl.so.3 hidden, exit 78 saying to install libssl3"
fi
echo "rediss:// through $cli: admitted 2 of rpm 2, then limited; an unknown CA refused$hidden"
