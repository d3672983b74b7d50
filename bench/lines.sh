#!/usr/bin/env bash
# bench/lines.sh: line-frame throughput through a Lua handler against raw echo,
# in the same run. Each run starts each server in turn (pinned to CPU 0) and
# drives it with bench/linegen (pinned to CPU 1): CONNS connections, SIZE-byte
# lines, INFLIGHT lines in flight per connection, every echoed byte checked.
# Prints the median of RUNS runs per server, and each run's figures.
#
# Servers:
#   ref         bench/ref_echo: raw echo in C on libev (the ceiling)
#   echo        examples/echo.lua: raw echo, a Lua handler per read (no framing)
#   lines       bench/line_echo.lua: the native lineFrame, a Lua handler per line (Buffers)
#   lines-str   the same with asString: a Lua string per line, written back as line .. "\n"
#
# Settings (environment): LINES_CONNS=50 LINES_SIZE=64 LINES_INFLIGHT=16
#   LINES_SECS=5 LINES_WARMUP=1 LINES_RUNS=3 LINES_SERVERS="ref echo lines lines-str"
#   BUILD=build (configured with -DLUPINE_BENCH=ON)
# Raw results go to bench/out/lines-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh # servers ref echo lines lines-str, start, stop, pin, lg_run; results.sh
LG=$BUILD/bench/linegen # what lg_run drives
CONNS=${LINES_CONNS:-50}
SIZE=${LINES_SIZE:-64}
INFLIGHT=${LINES_INFLIGHT:-16}
SECS=${LINES_SECS:-5}
WARMUP=${LINES_WARMUP:-1}
RUNS=${LINES_RUNS:-3}
SERVERS=${LINES_SERVERS:-ref echo lines lines-str}
OUT=bench/out/lines-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "== building ($BUILD)"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUPINE_BENCH=ON &&
  cmake --build "$BUILD" -j 2 --target lupine_lua ref_echo linegen; } >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log"
  exit 1
fi

trap stop EXIT

RES=$OUT/results.txt
: >"$RES"
LG_ARGS=(-c "$CONNS" -s "$SIZE" -i "$INFLIGHT" -w "$WARMUP" -d "$SECS")
for r in $(seq "$RUNS"); do
  for s in $SERVERS; do lg_run "$s" "$r" "$SECS" "${LG_ARGS[@]}"; done
done

echo
echo "lines echoed per second: median of $RUNS runs; $CONNS connections, $SIZE-byte lines, $INFLIGHT in flight each; ${SECS} s after ${WARMUP} s"
printf '%-10s %10s %7s %7s %10s %7s %7s %5s %5s\n' server "lines/s" "x echo" "x ref" "cpu us/ln" "x echo" "x ref" srv lg
for s in $SERVERS; do
  printf '%-10s %10.0f %7s %7s %10.3f %7s %7s %5.2f %5.2f\n' "$s" "$(res_get "$s" lines_per_s)" \
    "$(res_ratio "$s" echo lines_per_s)" "$(res_ratio "$s" ref lines_per_s)" "$(res_get "$s" srv_cpu_us_per_line)" \
    "$(res_ratio "$s" echo srv_cpu_us_per_line)" "$(res_ratio "$s" ref srv_cpu_us_per_line)" "$(res_get "$s" srv_util)" "$(res_get "$s" lg_util)"
done
echo "x echo, x ref: median over runs of the ratio to that server's figure in the same run (lines/s: higher is"
echo "  better; cpu us/ln, the server's CPU time per line: lower is better). srv, lg: CPU seconds per second of"
echo "  the server and of linegen; both well under 1.00 means the machine (shared) was the limit, and cpu us/ln"
echo "  is the figure to compare."
pin "$LG_CPUS"
echo "load: ${PIN[*]} $LG -p PORT ${LG_ARGS[*]} -P PID   (results: $RES)"
