#!/usr/bin/env bash
# rt_try_acquire on the Redis backend next to plain INCR on the same private
# redis-server, at the same concurrency. For each "PxT" (P processes x T
# threads = C clients): redis-benchmark -t incr -c C -P 1 (one event-loop
# thread, no pipelining; p50/p99 from its CSV), bench_redis --raw-incr (INCR
# through hiredis from P processes x T threads: the same harness as the
# next) and bench_redis (rt_try_acquire, one tracker per process with up to
# 4 connections; with more threads than that, 2 stay busy and queued
# decisions are merged).
# Redis is flushed before each measurement. Figures only: nothing here fails
# on a slow machine.
#
#   scripts/bench-redis.sh [SECONDS] [PxT ...]    (default: 3 1x1 1x4 2x4 1x16 2x8)
#   RT_BENCH_NO_BUILD=1 scripts/bench-redis.sh   (no rebuild: measure build/ as is)
#   RT_BENCH_ROUNDS=5 scripts/bench-redis.sh     (interleaved rounds; default 3)
#   RT_BENCH_QUERY='&connections=2' scripts/bench-redis.sh   (more URL parameters)
#   RT_BENCH_TLS=1 scripts/bench-redis.sh   (try_acquire over rediss:// to a TLS port of the
#                                same server; the INCR references stay on its plain port)
#   RT_BENCH_REPLICA=1 RT_BENCH_QUERY='&replicas=1' scripts/bench-redis.sh
#                                (a replica attached; replicas=1: every batch WAITs for it)
#
# Ratios are try_acquire / redis-benchmark INCR (throughput, p99); the last
# two columns are try_acquire / in-program INCR. The issue's target:
# throughput ratio >= 0.5, p99 ratio <= 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-3}
rounds=${RT_BENCH_ROUNDS:-3}
shift || true
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(1x1 1x4 2x4 1x16 2x8)

for tool in redis-server redis-benchmark redis-cli; do
  command -v "$tool" > /dev/null || { echo "bench-redis.sh: $tool not found (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
# RT_BENCH_NO_BUILD=1: measure build/ as it is (no rebuild).
if [ "${RT_BENCH_NO_BUILD:-0}" != 1 ]; then
  if [ ! -x build/benchmarks/bench_redis ]; then
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
  fi
  log=$(mktemp)
  if ! cmake --build build --target bench_redis ratetrack > "$log" 2>&1; then
    tail -20 "$log" >&2; rm -f "$log"
    echo "bench-redis.sh: the build failed (RT_BENCH_NO_BUILD=1 measures the existing build/)" >&2
    exit 1
  fi
  rm -f "$log"
fi

# A free loopback port, and a private server on it (no persistence).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
# RT_BENCH_TLS=1: a TLS port too, with a CA and certificate made here.
tls_args=()
if [ "${RT_BENCH_TLS:-0}" = 1 ]; then
  tport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  (cd "$dir" && {
    openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca &&
    openssl req $key -keyout server.key -out server.csr -subj /CN=localhost &&
    printf 'subjectAltName=IP:127.0.0.1\n' > server.ext &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 2 -extfile server.ext; } > /dev/null 2>&1) || { echo "bench-redis.sh: openssl failed" >&2; exit 1; }
  tls_args=(--tls-port "$tport" --tls-cert-file "$dir/server.pem" --tls-key-file "$dir/server.key"
            --tls-ca-cert-file "$dir/ca.pem" --tls-auth-clients no)
fi
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  --logfile "$dir/redis.log" --daemonize no "${tls_args[@]}" &
server=$!
cleanup() { kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 100); do
  [ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] && break
  sleep 0.05
done
[ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] || { echo "bench-redis.sh: redis-server did not start" >&2; exit 1; }
# RT_BENCH_REPLICA=1: a replica of it (for ?replicas=N), once it is in sync.
if [ "${RT_BENCH_REPLICA:-0}" = 1 ]; then
  rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir/replica"
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/replica" \
    --logfile "$dir/replica.log" --replicaof 127.0.0.1 "$port" --daemonize no &
  replica=$!
  cleanup() {
    kill "$server" "$replica" 2> /dev/null || true
    wait "$server" "$replica" 2> /dev/null || true
    rm -rf "$dir"
  }
  redis-cli -p "$port" config set repl-diskless-sync-delay 0 > /dev/null
  for _ in $(seq 400); do
    redis-cli -p "$port" info replication | grep -q 'state=online' && break
    sleep 0.05
  done
  redis-cli -p "$port" info replication | grep -q 'state=online' || { echo "bench-redis.sh: the replica did not sync" >&2; exit 1; }
fi
cli() { redis-cli -p "$port" "$@" > /dev/null; }
url="redis://127.0.0.1:$port/0?prefix=rtbench&timeout_ms=50&on_error=closed${RT_BENCH_QUERY:-}"
# try_acquire's URL (--raw-incr stays on the plain port: the reference).
ta_url=$url
[ "${RT_BENCH_TLS:-0}" = 1 ] &&
  ta_url="rediss://127.0.0.1:$tport/0?prefix=rtbench&timeout_ms=50&on_error=closed&tls_ca_file=$dir/ca.pem${RT_BENCH_QUERY:-}"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f3); ${secs} s per measurement${RT_BENCH_QUERY:+; URL parameters $RT_BENCH_QUERY}$([ "${RT_BENCH_REPLICA:-0}" = 1 ] && echo "; a replica attached")$([ "${RT_BENCH_TLS:-0}" = 1 ] && echo "; try_acquire over TLS")"
out=$(mktemp)
# Rounds: every case is measured $rounds times, interleaved (INCR, then
# try_acquire, case after case), and the table shows medians: this machine's
# speed drifts by tens of percent within seconds, and a reference measured
# next to the call it is compared with drifts with it.
for round in $(seq "$rounds"); do
for c in "${cases[@]}"; do
  p=${c%x*} t=${c#*x} clients=$((p * t))
  # redis-benchmark runs a number of requests: size it from a short probe.
  cli flushall
  rps=$(nice -n 10 redis-benchmark -p "$port" -t incr -c "$clients" -n 5000 -P 1 --csv | tail -1 | cut -d, -f2 | tr -d '"')
  n=$(python3 -c "print(max(10000, int(float('$rps') * $secs)))")
  cli flushall
  rb=$(nice -n 10 redis-benchmark -p "$port" -t incr -c "$clients" -n "$n" -P 1 --csv | tail -1 | tr -d '"')
  cli flushall
  raw=$(nice -n 10 build/benchmarks/bench_redis --url "$url" -p "$p" -t "$t" -s "$secs" --raw-incr --csv || true)
  cli flushall
  ta=$(nice -n 10 build/benchmarks/bench_redis --url "$ta_url" -p "$p" -t "$t" -s "$secs" --csv || true)
  echo "$c|$clients|$rb|$raw|$ta" >> "$out"
done
done
python3 - "$out" "$rounds" <<'PY'
import statistics, sys
rounds = int(sys.argv[2])
print(f"\nmedians of {rounds} interleaved rounds; ratios are medians of the per-round ratios")
print(f"{'PxT':>5} {'cli':>3} | {'INCR (redis-benchmark)':>24} | {'INCR (bench_redis)':>24} | "
      f"{'try_acquire':>24} | {'tput':>5} {'p99':>5} | {'tput':>5} {'p99':>5}")
print(f"{'':>5} {'':>3} | {'ops/s':>8} {'p50us':>7} {'p99us':>7} | {'ops/s':>8} {'p50us':>7} {'p99us':>7} | "
      f"{'ops/s':>8} {'p50us':>7} {'p99us':>7} | {'x rb':>5} {'x rb':>5} | {'x raw':>5} {'x raw':>5}")
def parse(s):
    f = s.split(",")
    if len(f) < 9:
        return None
    return float(f[3]), float(f[4]), float(f[5]), int(f[8])
rows = {}
for line in open(sys.argv[1]):
    c, clients, rb, raw, ta = line.rstrip("\n").split("|")
    rb = rb.split(",")
    rows.setdefault((c, clients), []).append(
        ((float(rb[1]), float(rb[4]) * 1000, float(rb[6]) * 1000, 0), parse(raw), parse(ta)))
med = statistics.median
for (c, clients), runs in rows.items():
    def col(k):
        xs = [r[k] for r in runs if r[k]]
        if not xs:
            return None
        return tuple(med(x[i] for x in xs) for i in range(3)) + (sum(x[3] for x in xs),)
    def ratio(k, ref, i):
        xs = [r[k][i] / r[ref][i] for r in runs if r[k] and r[ref] and r[ref][i]]
        return f"{med(xs):5.2f}" if xs else f"{'-':>5}"
    rb, r, t = col(0), col(1), col(2)
    def cols(x):
        return f"{x[0]:8.0f} {x[1]:7.1f} {x[2]:7.1f}" if x else f"{'failed':>24}"
    errs = [f"{name} {x[3]} errors" for name, x in (("raw", r), ("try_acquire", t)) if x and x[3]]
    print(f"{c:>5} {clients:>3} | {cols(rb)} | {cols(r)} | {cols(t)} | "
          f"{ratio(2, 0, 0)} {ratio(2, 0, 2)} | {ratio(2, 1, 0)} {ratio(2, 1, 2)}"
          + (f"   ({', '.join(errs)})" if errs else ""))
PY
rm -f "$out"
