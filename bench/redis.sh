#!/usr/bin/env bash
# bench/redis.sh: examples/redis_lite.lua -w 1 (one worker thread) against
# redis-server (its one main thread) in one run, side by side, and the
# lupine.shared contention figure.
#
# redis-benchmark -c 50 -t ping,set,get,incr, and the same with -P 16: each
# server pinned to CPU 0, redis-benchmark to CPU 1; one test per
# redis-benchmark run so that the server's CPU time (utime+stime from
# /proc/PID/stat, all threads) is measured around exactly that test; the
# runs alternate between the two servers. Prints
# requests per second, the ratio to Redis, and the server's CPU microseconds
# per request; RUNS runs each, the median.
#
# Then bench/shared_incr.lua: incr on one shared key from 1 worker, then from
# 2 workers at once (CPUs 0-1), operations per second.
#
# Settings: REDIS_N=200000 (requests per test), REDIS_RUNS=3, SHARED_SECS=3, BUILD=build.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${REDIS_N:-200000}
RUNS=${REDIS_RUNS:-3}
OUT=bench/out/redis-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
for tool in redis-server redis-benchmark taskset; do
  command -v $tool >/dev/null || { echo "bench/redis.sh: $tool is not installed (redis-server, redis-tools, util-linux)"; exit 1; }
done
cmake --build "$BUILD" -j 2 --target lupine >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
pid= port=

start() { # redis | lite
  if [ "$1" = redis ]; then
    for _ in 1 2 3 4 5; do # a random port may be taken: try another
      port=$((20000 + RANDOM % 20000))
      taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --loglevel warning --dir "$OUT" >"$OUT/redis.log" 2>&1 &
      pid=$!
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.05
      done
      stop
    done
    return 1
  fi
  taskset -c 0 "$BUILD/lupine" -w 1 -p 0 examples/redis_lite.lua >"$OUT/lite.out" 2>"$OUT/lite.err" &
  pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$OUT/lite.out")
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  return 1
}
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }

# Both servers run at once (idle unless measured), and the runs alternate
# between them: load from elsewhere on the machine then falls on both alike.
start redis || { echo "bench/redis.sh: redis-server did not start"; exit 1; }
rpid=$pid rport=$port
pid=
start lite || { echo "bench/redis.sh: redis_lite did not start"; kill "$rpid"; exit 1; }
lpid=$pid lport=$port
pid=
trap 'kill $rpid $lpid 2>/dev/null; wait 2>/dev/null' EXIT

declare -A RPS CPU
for p in 1 16; do
  for t in ping_mbulk set get incr; do
    declare -A rs=() cs=()
    for r in $(seq "$RUNS"); do
      for server in redis lite; do
        if [ $server = redis ]; then spid=$rpid sport=$rport; else spid=$lpid sport=$lport; fi
        c0=$(cpu_ticks "$spid")
        line=$(taskset -c 1 redis-benchmark -p "$sport" -c 50 -n "$N" -P "$p" -t "$t" --csv 2>/dev/null | tail -1)
        c1=$(cpu_ticks "$spid")
        echo "$server P=$p $t run $r: $line cpu_ticks=$((c1 - c0))" >>"$OUT/raw.txt"
        rs[$server]+="$(echo "$line" | awk -F'"' '{ print $4 }') "
        cs[$server]+="$(awk -v t=$((c1 - c0)) -v n="$N" -v h="$TCK" 'BEGIN { printf "%.3f", t / h / n * 1e6 }') "
      done
    done
    for server in redis lite; do
      RPS[$server,$p,$t]=$(printf '%s\n' ${rs[$server]} | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
      CPU[$server,$p,$t]=$(printf '%s\n' ${cs[$server]} | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    done
    unset rs cs
  done
done

echo
echo "redis-benchmark -c 50 -n $N (-P as shown), median of $RUNS; servers on CPU 0, redis-benchmark on CPU 1"
printf '%-12s %4s %14s %14s %7s %12s %12s\n' test P "redis req/s" "lite req/s" ratio "redis us/req" "lite us/req"
for p in 1 16; do
  for t in ping_mbulk set get incr; do
    r=${RPS[redis,$p,$t]} l=${RPS[lite,$p,$t]}
    printf '%-12s %4s %14s %14s %7s %12s %12s\n' "$t" "$p" "$r" "$l" \
      "$(awk -v a="$l" -v b="$r" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')" "${CPU[redis,$p,$t]}" "${CPU[lite,$p,$t]}"
  done
done
echo "servers: taskset -c 0 redis-server --save '' --appendonly no | taskset -c 0 $BUILD/lupine -w 1 examples/redis_lite.lua"

echo
echo "lupine.shared incr on one key, ${SHARED_SECS:-3} s (bench/shared_incr.lua)"
for w in 1 2; do
  cpus=0
  [ $w = 2 ] && cpus=0,1
  taskset -c $cpus "$BUILD/lupine" -w $w -p 0 bench/shared_incr.lua >"$OUT/shared-$w.out" 2>&1 &
  spid=$!
  for _ in $(seq 200); do [ "$(grep -c '^worker' "$OUT/shared-$w.out")" -ge $w ] && break; sleep 0.1; done
  kill $spid 2>/dev/null
  wait $spid 2>/dev/null
  total=$(awk '/^worker/ { s += $3 } END { print s + 0 }' "$OUT/shared-$w.out")
  secs=$(awk '/^worker/ { print $6; exit }' "$OUT/shared-$w.out")
  printf '  %d worker%s (CPUs %s): %12.0f ops/s\n' $w "$([ $w = 2 ] && echo s)" $cpus "$(awk -v t="$total" -v s="$secs" 'BEGIN { print (s > 0) ? t / s : 0 }')"
done
echo "raw: $OUT"
