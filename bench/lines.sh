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
CONNS=${LINES_CONNS:-50}
SIZE=${LINES_SIZE:-64}
INFLIGHT=${LINES_INFLIGHT:-16}
SECS=${LINES_SECS:-5}
WARMUP=${LINES_WARMUP:-1}
RUNS=${LINES_RUNS:-3}
SERVERS=${LINES_SERVERS:-ref echo lines lines-str}
BUILD=${BUILD:-build}
OUT=bench/out/lines-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "== building ($BUILD)"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUPINE_BENCH=ON &&
  cmake --build "$BUILD" -j 2 --target lupine_lua ref_echo linegen; } >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log"
  exit 1
fi

if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then SRV_PIN=(taskset -c 0) LG_PIN=(taskset -c 1)
else SRV_PIN=() LG_PIN=(); echo "lines: unpinned (fewer than 2 CPUs or no taskset)"; fi
LUAENV=("LUA_PATH=./lua/?.lua;./lua/?/init.lua;;" "LUA_CPATH=./$BUILD/lib/?.so;;" PORT=0)
server_cmd() {
  case $1 in
  ref) CMD=("$BUILD/bench/ref_echo" -p 0) ;;
  echo) CMD=(env "${LUAENV[@]}" lua5.4 examples/echo.lua) ;;
  lines) CMD=(env "${LUAENV[@]}" LINES=buffer lua5.4 bench/line_echo.lua) ;;
  lines-str) CMD=(env "${LUAENV[@]}" LINES=string lua5.4 bench/line_echo.lua) ;;
  *) echo "lines: unknown server '$1'"; exit 2 ;;
  esac
}

pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
start() { # name log: sets pid, port
  server_cmd "$1"
  : >"$2.out"
  "${SRV_PIN[@]}" "${CMD[@]}" >"$2.out" 2>"$2.err" &
  pid=$! port=
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$2.out" | head -1)
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "lines: $1 did not start: $(head -3 "$2.err")"
  exit 1
}

RES=$OUT/results.txt
: >"$RES"
LG_ARGS=(-c "$CONNS" -s "$SIZE" -i "$INFLIGHT" -w "$WARMUP" -d "$SECS")
for r in $(seq "$RUNS"); do
  for s in $SERVERS; do
    start "$s" "$OUT/$s-$r"
    if ! line=$(timeout $((${SECS%.*} + 60)) "${LG_PIN[@]}" "$BUILD/bench/linegen" -p "$port" "${LG_ARGS[@]}" -P "$pid" 2>"$OUT/$s-$r.lgerr"); then
      echo "run $r $s: FAILED: $(cat "$OUT/$s-$r.lgerr")"
      stop
      exit 1
    fi
    stop
    echo "run $r $s: $line"
    echo "$s $r $line" >>"$RES"
  done
done

. bench/results.sh # median, get, ratio
echo
echo "lines echoed per second: median of $RUNS runs; $CONNS connections, $SIZE-byte lines, $INFLIGHT in flight each; ${SECS} s after ${WARMUP} s"
printf '%-10s %10s %7s %7s %10s %7s %7s %5s %5s\n' server "lines/s" "x echo" "x ref" "cpu us/ln" "x echo" "x ref" srv lg
for s in $SERVERS; do
  printf '%-10s %10.0f %7s %7s %10.3f %7s %7s %5.2f %5.2f\n' "$s" "$(get "$s" lines_per_s)" \
    "$(ratio "$s" echo lines_per_s)" "$(ratio "$s" ref lines_per_s)" "$(get "$s" srv_cpu_us_per_line)" \
    "$(ratio "$s" echo srv_cpu_us_per_line)" "$(ratio "$s" ref srv_cpu_us_per_line)" "$(get "$s" srv_util)" "$(get "$s" lg_util)"
done
echo "x echo, x ref: median over runs of the ratio to that server's figure in the same run (lines/s: higher is"
echo "  better; cpu us/ln, the server's CPU time per line: lower is better). srv, lg: CPU seconds per second of"
echo "  the server and of linegen; both well under 1.00 means the machine (shared) was the limit, and cpu us/ln"
echo "  is the figure to compare."
echo "load: ${LG_PIN[*]} $BUILD/bench/linegen -p PORT ${LG_ARGS[*]} -P PID   (results: $RES)"
