#!/usr/bin/env bash
# bench/accept.sh: short connections (connect, one 64-byte echo, close) against
# lupine -w 2 with the boss thread accepting and handing each connection to a
# worker (w2), and with a listener per worker, SO_REUSEPORT (w2rp), in the same
# run. The servers run on CPUs 0,1, bench/loadgen -m short on CPU 1 (the machine
# has 2): CONNS connection slots, each cycling connect, echo, close; every byte
# checked. Prints the median of RUNS runs: connections per second, the server's
# CPU time per connection, and the ratio to w2 in the same run.
#
# Settings (environment): ACC_CONNS=20 ACC_SIZE=64 ACC_SECS=5 ACC_WARMUP=1
#   ACC_RUNS=3 ACC_SERVERS="w2 w2rp" BUILD=build
# Raw results go to bench/out/accept-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CONNS=${ACC_CONNS:-20}
SIZE=${ACC_SIZE:-64}
SECS=${ACC_SECS:-5}
WARMUP=${ACC_WARMUP:-1}
RUNS=${ACC_RUNS:-3}
SERVERS=${ACC_SERVERS:-w2 w2rp}
OUT=bench/out/accept-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
build_all "$OUT/build.log"
trap stop EXIT

RES=$OUT/results.txt
: >"$RES"
LG_ARGS=(-m short -c "$CONNS" -s "$SIZE" -w "$WARMUP" -d "$SECS")
for r in $(seq "$RUNS"); do
  for s in $SERVERS; do lg_run "$s" "$r" "$SECS" "${LG_ARGS[@]}"; done
done

echo
echo "short connections: median of $RUNS runs; $CONNS slots, each connect, $SIZE-byte echo, close; ${SECS} s after ${WARMUP} s"
printf '%-5s %10s %6s %11s %6s %5s %5s %9s\n' server "conn/s" "x w2" "cpu us/conn" "x w2" srv lg "p99 us"
for s in $SERVERS; do
  printf '%-5s %10.0f %6s %11.2f %6s %5.2f %5.2f %9.0f\n' "$s" "$(res_get "$s" rt_per_s)" "$(res_ratio "$s" w2 rt_per_s)" \
    "$(res_get "$s" srv_cpu_us_per_rt)" "$(res_ratio "$s" w2 srv_cpu_us_per_rt)" "$(res_get "$s" srv_util)" \
    "$(res_get "$s" lg_util)" "$(res_get "$s" p99_us)"
done
for s in $SERVERS; do echo "$s: $(server_line "$s")"; done
pin "$LG_CPUS"
echo "load: ${PIN[*]} $LG -p PORT ${LG_ARGS[*]} -P PID   (results: $RES; uptime: $(uptime | sed 's/.*load/load/'))"
