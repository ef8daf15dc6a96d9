# Sourced by the command's Redis tests (cli_redis_test.sh, cli_rediss_test.sh).
#   start_redis_server DIR ARG...
# starts redis-server in DIR (its log: DIR/redis.log) with the ARGs, where
# "{port}" stands for a free loopback port below the ephemeral range
# (32768-60999 on Linux, where client sockets of tests running alongside
# take theirs); bind-and-retry, 5 attempts. Sets $port and $redis (its pid),
# or fails with the server's log.
start_redis_server() {
  local dir=$1 attempt i
  shift
  redis=""
  for attempt in 1 2 3 4 5; do
    port=$((20000 + (RANDOM * 7 + $$) % 12000))
    redis-server "${@//\{port\}/$port}" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$dir" > "$dir/redis.log" 2>&1 &
    redis=$!
    for i in $(seq 50); do
      grep -qs "Ready to accept connections" "$dir/redis.log" && break
      kill -0 "$redis" 2> /dev/null || break
      sleep 0.1
    done
    grep -qs "Ready to accept connections" "$dir/redis.log" && return 0
    kill -KILL "$redis" 2> /dev/null || true; wait "$redis" 2> /dev/null || true; redis=""
  done
  cat "$dir/redis.log"
  fail "redis-server did not start in 5 attempts"
}
