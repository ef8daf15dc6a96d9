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
#   RT_BENCH_CLUSTER=1 scripts/bench-redis.sh [SECONDS] [PxT ...]   (default: 3 1x8 2x8)
#                                (try_acquire on Redis Clusters of 1 and of 3 masters)
#
# Ratios are try_acquire / redis-benchmark INCR (throughput, p99); the last
# two columns are try_acquire / in-program INCR. The issue's target:
# throughput ratio >= 0.5, p99 ratio <= 2.
#
# RT_BENCH_CLUSTER=1: two Redis Clusters of the script's own are formed next
# to the plain server (no replicas; cluster-enabled servers on free loopback
# ports, the slots shared evenly, CLUSTER MEET, cluster_state:ok on every
# node): one of 1 master and one of 3. For each PxT and each model count of
# RT_BENCH_MODELS (default "64 1": bench_redis --models, every thread going
# round the models), try_acquire runs over redis:// to the plain server (the
# reference), then over redis+cluster:// to the 1-master and to the 3-master
# cluster, in interleaved rounds (the order of the three turned each round).
# The table shows medians and the ratio 3 masters / 1 master (throughput,
# p99) as the median of the per-round ratios with their range; a second
# table shows the CPU used during each measurement: the redis-server(s)
# measured, bench_redis (every process), and the whole machine (/proc/stat),
# in cores. With 2 cores, 3 masters and the clients share them: read that
# table before the ratios.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-3}
rounds=${RT_BENCH_ROUNDS:-3}
shift || true
cases=("$@")
cluster=${RT_BENCH_CLUSTER:-0}
if [ ${#cases[@]} -eq 0 ]; then
  if [ "$cluster" = 1 ]; then cases=(1x8 2x8); else cases=(1x1 1x4 2x4 1x16 2x8); fi
fi
if [ "$cluster" = 1 ] && { [ "${RT_BENCH_TLS:-0}" = 1 ] || [ "${RT_BENCH_REPLICA:-0}" = 1 ]; }; then
  echo "bench-redis.sh: RT_BENCH_CLUSTER=1 is measured alone (no RT_BENCH_TLS, RT_BENCH_REPLICA)" >&2
  exit 1
fi

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

# N distinct free loopback ports (all bound at once, then released).
free_ports() {
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
# A private server on a free port (no persistence). Every server started
# here is in pids; the exit takes them and the directory away.
port=$(free_ports 1)
dir=$(mktemp -d)
pids=()
cleanup() {
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2> /dev/null || true
    wait "${pids[@]}" 2> /dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# RT_BENCH_TLS=1: a TLS port too, with a CA and certificate made here.
tls_args=()
if [ "${RT_BENCH_TLS:-0}" = 1 ]; then
  tport=$(free_ports 1)
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
pids+=("$server")
for _ in $(seq 100); do
  [ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] && break
  sleep 0.05
done
[ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] || { echo "bench-redis.sh: redis-server did not start" >&2; exit 1; }
# RT_BENCH_REPLICA=1: a replica of it (for ?replicas=N), once it is in sync.
if [ "${RT_BENCH_REPLICA:-0}" = 1 ]; then
  rport=$(free_ports 1)
  mkdir -p "$dir/replica"
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/replica" \
    --logfile "$dir/replica.log" --replicaof 127.0.0.1 "$port" --daemonize no &
  pids+=($!)
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

out=$dir/results
# RT_BENCH_CLUSTER=1: try_acquire on Redis Clusters of 1 and 3 masters next
# to the plain server (the header says what is measured); then exit.
if [ "$cluster" = 1 ]; then
  read -r -a model_counts <<< "${RT_BENCH_MODELS:-64 1}"
  query="prefix=rtbench&timeout_ms=50&on_error=closed${RT_BENCH_QUERY:-}"
  # form_cluster NAME MASTERS: that many cluster-enabled servers in
  # $dir/NAME (no replicas), the slots shared evenly, joined, and serving
  # every slot (cluster_state:ok on every node). Sets ports_NAME and
  # pids_NAME (space-separated). Each node announces 127.0.0.1: a node that
  # never met another (the 1-master cluster) names itself ":port" in CLUSTER
  # NODES, with no address, and the client takes no slot map from that.
  form_cluster() {
    local name=$1 n=$2 i lo hi per=$((16384 / $2)) ok
    local -a ps cpids
    read -r -a ps <<< "$(free_ports $((2 * n)))"  # n client ports, then n bus ports
    mkdir -p "$dir/$name"
    for ((i = 0; i < n; i++)); do
      redis-server --port "${ps[i]}" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$dir/$name/nodes-$i.conf" --cluster-port "${ps[n + i]}" \
        --cluster-announce-ip 127.0.0.1 \
        --save '' --appendonly no --dir "$dir/$name" --logfile "$dir/$name/node-$i.log" \
        --daemonize no &
      pids+=($!)
      cpids+=($!)
    done
    for ((i = 0; i < n; i++)); do
      for _ in $(seq 100); do
        [ "$(redis-cli -p "${ps[i]}" ping 2> /dev/null)" = PONG ] && break
        sleep 0.05
      done
      [ "$(redis-cli -p "${ps[i]}" ping 2> /dev/null)" = PONG ] ||
        { echo "bench-redis.sh: a cluster node did not start ($dir/$name/node-$i.log)" >&2; exit 1; }
      lo=$((i * per)) hi=$((i + 1 == n ? 16383 : (i + 1) * per - 1))
      redis-cli -p "${ps[i]}" cluster set-config-epoch $((i + 1)) > /dev/null
      [ "$(redis-cli -p "${ps[i]}" cluster addslotsrange "$lo" "$hi")" = OK ] ||
        { echo "bench-redis.sh: CLUSTER ADDSLOTSRANGE failed" >&2; exit 1; }
    done
    for ((i = 1; i < n; i++)); do
      redis-cli -p "${ps[0]}" cluster meet 127.0.0.1 "${ps[i]}" "${ps[n + i]}" > /dev/null
    done
    for _ in $(seq 400); do
      ok=1
      for ((i = 0; i < n; i++)); do
        redis-cli -p "${ps[i]}" cluster info 2> /dev/null |
          grep -q "^cluster_state:ok" || { ok=0; break; }
        [ "$(redis-cli -p "${ps[i]}" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" = "$n" ] ||
          { ok=0; break; }
      done
      [ "$ok" = 1 ] && break
      sleep 0.05
    done
    [ "$ok" = 1 ] || { echo "bench-redis.sh: the $n-master cluster did not reach cluster_state:ok" >&2; exit 1; }
    printf -v "ports_$name" '%s' "${ps[*]:0:n}"
    printf -v "pids_$name" '%s' "${cpids[*]}"
  }
  form_cluster c1 1
  form_cluster c3 3
  # The plain server's, then each cluster's nodes, URL and pids, by name.
  declare -A b_ports b_url b_pids
  b_ports[single]=$port b_url[single]="redis://127.0.0.1:$port/0?$query" b_pids[single]=$server
  for b in c1 c3; do
    p_var=ports_$b q_var=pids_$b
    b_ports[$b]=${!p_var} b_pids[$b]=${!q_var}
    b_url[$b]="redis+cluster://127.0.0.1:${b_ports[$b]%% *}?$query"
  done
  # How each model count's models fall on the 3 masters (slots: the key is
  # "{rtbench:<model>}", the masters hold equal ranges in order).
  read -r -a c3_ports <<< "${b_ports[c3]}"
  spread=""
  for m in "${model_counts[@]}"; do
    counts=(0 0 0)
    for ((k = 0; k < m; k++)); do
      if [ "$m" = 1 ]; then name=bench/m; else name=bench-$k; fi
      slot=$(redis-cli -p "${c3_ports[0]}" cluster keyslot "{rtbench:$name}")
      i=$((slot / 5461 < 2 ? slot / 5461 : 2))  # form_cluster's ranges for 3
      counts[i]=$((counts[i] + 1))
    done
    spread+="${spread:+; }$m model$([ "$m" = 1 ] || echo s): ${counts[0]}/${counts[1]}/${counts[2]}"
  done
  hz=$(getconf CLK_TCK)
  # CPU ticks (user + system) of the processes named, and of the machine.
  proc_ticks() {
    local t=0 p f
    for p in "$@"; do
      read -r -a f < "/proc/$p/stat"
      t=$((t + f[13] + f[14]))
    done
    echo "$t"
  }
  machine_ticks() {
    local _c u n s _i _w q sq st _r
    read -r _c u n s _i _w q sq st _r < /proc/stat
    echo $((u + n + s + q + sq + st))
  }
  TIMEFORMAT='%3U %3S'
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC'); $(redis-server --version | cut -d' ' -f3); ${secs} s per measurement, $rounds rounds${RT_BENCH_QUERY:+; URL parameters $RT_BENCH_QUERY}"
  echo "models over the 3 masters (slots): $spread"
  backends=(single c1 c3)
  for round in $(seq "$rounds"); do
    # The order of the three turns each round: none is always measured first.
    r=$(((round - 1) % 3))
    order=("${backends[@]:r}" "${backends[@]:0:r}")
    for c in "${cases[@]}"; do
      p=${c%x*} t=${c#*x}
      for m in "${model_counts[@]}"; do
        for b in "${order[@]}"; do
          for bp in ${b_ports[$b]}; do redis-cli -p "$bp" flushall > /dev/null; done
          read -r -a spids <<< "${b_pids[$b]}"
          s0=$(proc_ticks "${spids[@]}") m0=$(machine_ticks) w0=$(date +%s%N)
          { time nice -n 10 build/benchmarks/bench_redis --url "${b_url[$b]}" -p "$p" -t "$t" \
              -s "$secs" --models "$m" --csv > "$dir/ta" 2> "$dir/err" || true; } 2> "$dir/time"
          w1=$(date +%s%N) m1=$(machine_ticks) s1=$(proc_ticks "${spids[@]}")
          [ -s "$dir/err" ] && sed "s/^/  ($b, $c, $m models) /" "$dir/err" | head -3 >&2
          read -r cu cs < "$dir/time"
          echo "$c|$m|$b|$(tail -1 "$dir/ta")|$((s1 - s0))|$cu|$cs|$((m1 - m0))|$((w1 - w0))" >> "$out"
        done
      done
    done
  done
  echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$out" "$rounds" "$hz" <<'PY'
import statistics, sys
rounds, hz = int(sys.argv[2]), int(sys.argv[3])
med = statistics.median
runs = {}  # (case, models) -> backend -> [per-round (ops, p50, p99, errors, cpu...)]
for line in open(sys.argv[1]):
    c, m, b, csv, srv, cu, cs, mach, wall = line.rstrip("\n").split("|")
    f = csv.split(",")
    wall_s = int(wall) / 1e9
    cpu = (int(srv) / hz / wall_s, (float(cu) + float(cs)) / wall_s, int(mach) / hz / wall_s)
    r = (float(f[3]), float(f[4]), float(f[5]), int(f[8])) if len(f) >= 9 else None
    runs.setdefault((c, int(m)), {}).setdefault(b, []).append((r, cpu))
names = {"single": "redis://", "c1": "cluster, 1 master", "c3": "cluster, 3 masters"}
print(f"\nmedians of {rounds} interleaved rounds; ratios are medians of the per-round ratios (range)")
print(f"{'PxT':>5} {'models':>6} | {names['single']:>18} | {names['c1']:>18} | {names['c3']:>18} | "
      f"{'3 masters / 1 master':>29} | {'1 master / redis://':>19}")
print(f"{'':>5} {'':>6} |" + f" {'ops/s':>9} {'p99 us':>8} |" * 3 +
      f" {'tput':>14} {'p99':>14} | {'tput':>9} {'p99':>9}")
def cols(xs):
    xs = [x for x, _ in xs if x]
    return (f"{med(x[0] for x in xs):9.0f} {med(x[2] for x in xs):8.1f}" if xs else f"{'failed':>18}",
            sum(x[3] for x in xs))
def ratio(a, b, i, rng=True):
    xs = [x[0][i] / y[0][i] for x, y in zip(a, b) if x[0] and y[0] and y[0][i]]
    if not xs:
        return f"{'-':>14}" if rng else f"{'-':>9}"
    return f"{med(xs):4.2f} {min(xs):4.2f}-{max(xs):4.2f}" if rng else f"{med(xs):9.2f}"
for (c, m), by in runs.items():
    s, c1, c3 = by.get("single", []), by.get("c1", []), by.get("c3", [])
    (ts, es), (t1, e1), (t3, e3) = cols(s), cols(c1), cols(c3)
    errs = [f"{n} {e} errors" for n, e in (("redis://", es), ("1 master", e1), ("3 masters", e3)) if e]
    print(f"{c:>5} {m:>6} | {ts} | {t1} | {t3} | {ratio(c3, c1, 0)} {ratio(c3, c1, 2)} | "
          f"{ratio(c1, s, 0, False)} {ratio(c1, s, 2, False)}" + (f"   ({', '.join(errs)})" if errs else ""))
print("\nCPU during each measurement, in cores (medians; the run includes rt_open and the 0.2 s warm-up),"
      "\nand per call (cores / calls a second: CPU microseconds a decision, the warm-up's included):")
print(f"{'PxT':>5} {'models':>6} {'':>18} | {'redis-server(s)':>15} {'bench_redis':>11} {'machine':>8} {'the rest':>8}"
      f" | {'server us':>9} {'client us':>9}")
for (c, m), by in runs.items():
    for b in ("single", "c1", "c3"):
        xs = by.get(b, [])
        if not xs:
            continue
        srv, cli, mach = (med(cpu[i] for _, cpu in xs) for i in range(3))
        rest = med(cpu[2] - cpu[0] - cpu[1] for _, cpu in xs)
        per = [(cpu[0] / r[0] * 1e6, cpu[1] / r[0] * 1e6) for r, cpu in xs if r and r[0]]
        per_s = f"{med(x[0] for x in per):9.1f} {med(x[1] for x in per):9.1f}" if per else f"{'-':>9} {'-':>9}"
        print(f"{c:>5} {m:>6} {names[b]:>18} | {srv:15.2f} {cli:11.2f} {mach:8.2f} {rest:8.2f} | {per_s}")
PY
  exit 0
fi
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f3); ${secs} s per measurement${RT_BENCH_QUERY:+; URL parameters $RT_BENCH_QUERY}$([ "${RT_BENCH_REPLICA:-0}" = 1 ] && echo "; a replica attached")$([ "${RT_BENCH_TLS:-0}" = 1 ] && echo "; try_acquire over TLS")"
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
