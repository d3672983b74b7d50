#!/usr/bin/env bash
# bench/ws.sh: WebSocket ping-pong against TCP echo, in the same run. Each run
# starts each server in turn (pinned to CPU 0) and drives it with bench/loadgen
# (pinned to CPU 1): CONNS connections, each sending one SIZE-byte message and
# waiting for its echo, every echoed byte checked. Prints the median of RUNS
# runs per server, the ratio to TCP echo in the same run, and each run's figures.
#
# Servers:
#   echo   examples/echo.lua: raw TCP echo, a Lua handler per read (loadgen plain)
#   ws     bench/ws_echo.lua: the native WebSocket frame codec, a Lua handler per
#          message (loadgen -W: masked text frames in, unmasked frames back)
#
# Settings (environment): WS_CONNS=50 WS_SIZE=64 WS_SECS=5 WS_WARMUP=1 WS_RUNS=3
#   WS_SERVERS="echo ws" BUILD=build (configured with -DLUPINE_BENCH=ON)
# Raw results go to bench/out/ws-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh # servers echo and ws, start, stop, pin, lg_run; results.sh
CONNS=${WS_CONNS:-50}
SIZE=${WS_SIZE:-64}
SECS=${WS_SECS:-5}
WARMUP=${WS_WARMUP:-1}
RUNS=${WS_RUNS:-3}
SERVERS=${WS_SERVERS:-echo ws}
OUT=bench/out/ws-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "== building ($BUILD)"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUPINE_BENCH=ON &&
  cmake --build "$BUILD" -j 2 --target lupine_lua loadgen; } >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log"
  exit 1
fi

trap stop EXIT

RES=$OUT/results.txt
: >"$RES"
LG_ARGS=(-c "$CONNS" -s "$SIZE" -w "$WARMUP" -d "$SECS")
for r in $(seq "$RUNS"); do
  for s in $SERVERS; do
    LG_WS=()
    [ "$s" = ws ] && LG_WS=(-W) # masked text frames in, unmasked frames back
    lg_run "$s" "$r" "$SECS" "${LG_WS[@]}" "${LG_ARGS[@]}"
  done
done

echo
echo "round trips per second: median of $RUNS runs; $CONNS connections, $SIZE-byte messages, ping-pong; ${SECS} s after ${WARMUP} s"
printf '%-6s %10s %7s %10s %7s %5s %5s\n' server "rt/s" "x echo" "cpu us/rt" "x echo" srv lg
for s in $SERVERS; do
  printf '%-6s %10.0f %7s %10.3f %7s %5.2f %5.2f\n' "$s" "$(res_get "$s" rt_per_s)" "$(res_ratio "$s" echo rt_per_s)" \
    "$(res_get "$s" srv_cpu_us_per_rt)" "$(res_ratio "$s" echo srv_cpu_us_per_rt)" "$(res_get "$s" srv_util)" "$(res_get "$s" lg_util)"
done
echo "x echo: median over runs of the ratio to TCP echo's figure in the same run (rt/s: higher is better;"
echo "  cpu us/rt, the server's CPU time per round trip: lower is better). srv, lg: CPU seconds per second"
echo "  of the server and of loadgen; both well under 1.00 means the machine (shared) was the limit, and"
echo "  cpu us/rt is the figure to compare."
pin "$LG_CPUS"
echo "load: ${PIN[*]} $LG -p PORT [-W] ${LG_ARGS[*]} -P PID   (results: $RES)"
