#!/usr/bin/env bash
# bench/udp.sh: UDP echo, lupine against a plain libev UDP echo in C, side by
# side in one run. Each run starts each server in turn (pinned to CPU 0) and
# drives it with bench/loadgen -u (pinned to CPU 1), every echo checked whole:
#   pingpong  CONNS sockets, WINDOW datagrams of SIZE bytes outstanding each
#   flood     one socket sending as fast as the kernel takes datagrams; the
#             echoes count what the server received and answered
# Prints the median of RUNS runs per server and mode (datagrams echoed per
# second, the ratio to the reference in the same run, the server's CPU time
# per datagram), and each run's figures.
#
# Servers:
#   ref     bench/ref_udp_echo: recvfrom/sendto per datagram in C on libev (the ceiling)
#   lupine  examples/udp_echo.lua inline (bench/udp_serve.lua): a Lua handler per
#           datagram, recvmmsg/sendmmsg batches
#
# Settings (environment): UDP_CONNS=4 UDP_SIZE=64 UDP_WINDOW=16 UDP_SECS=5
#   UDP_WARMUP=1 UDP_RUNS=3 UDP_MODES="pingpong flood" UDP_SERVERS="ref lupine"
#   BUILD=build (configured with -DLUPINE_BENCH=ON)
# Raw results go to bench/out/udp-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
CONNS=${UDP_CONNS:-4}
SIZE=${UDP_SIZE:-64}
WINDOW=${UDP_WINDOW:-16}
SECS=${UDP_SECS:-5}
WARMUP=${UDP_WARMUP:-1}
RUNS=${UDP_RUNS:-3}
MODES=${UDP_MODES:-pingpong flood}
SERVERS=${UDP_SERVERS:-ref lupine}
BUILD=${BUILD:-build}
OUT=bench/out/udp-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "== building ($BUILD)"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUPINE_BENCH=ON &&
  cmake --build "$BUILD" -j 2 --target lupine_lua ref_udp_echo loadgen; } >"$OUT/build.log" 2>&1; then
  cat "$OUT/build.log"
  exit 1
fi

if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then SRV_PIN=(taskset -c 0) LG_PIN=(taskset -c 1)
else SRV_PIN=() LG_PIN=(); echo "udp: unpinned (fewer than 2 CPUs or no taskset)"; fi
server_cmd() {
  case $1 in
  ref) CMD=("$BUILD/bench/ref_udp_echo" -p 0) ;;
  lupine) CMD=(env "LUA_PATH=./lua/?.lua;./lua/?/init.lua;;" "LUA_CPATH=./$BUILD/lib/?.so;;" lua5.4 bench/udp_serve.lua) ;;
  *) echo "udp: unknown server '$1'"; exit 2 ;;
  esac
}

pid=
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
start() { # name log: sets pid, port
  server_cmd "$1"
  "${SRV_PIN[@]}" "${CMD[@]}" >"$2.out" 2>"$2.err" &
  pid=$! port=
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$2.out" | head -1)
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "udp: $1 did not start: $(head -3 "$2.err")"
  exit 1
}

RES=$OUT/results.txt
: >"$RES"
for r in $(seq "$RUNS"); do
  for m in $MODES; do
    if [ "$m" = flood ]; then LG_ARGS=(-u -m flood -c 1 -s "$SIZE" -w "$WARMUP" -d "$SECS")
    else LG_ARGS=(-u -m pingpong -c "$CONNS" -s "$SIZE" -i "$WINDOW" -w "$WARMUP" -d "$SECS"); fi
    for s in $SERVERS; do
      start "$s" "$OUT/$s-$m-$r"
      if ! line=$(timeout $((${SECS%.*} + 30)) "${LG_PIN[@]}" "$BUILD/bench/loadgen" -p "$port" "${LG_ARGS[@]}" -P "$pid" 2>"$OUT/$s-$m-$r.lgerr"); then
        echo "run $r $m $s: FAILED: $(cat "$OUT/$s-$m-$r.lgerr")"
        stop
        exit 1
      fi
      stop
      echo "run $r $m $s: $line"
      echo "$s-$m $r $line" >>"$RES"
    done
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
get() { awk -v s="$1" -v k="$2" '$1 == s { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$RES" | median; }
# ratio SERVER BASE KEY: the median over runs of SERVER's figure divided by BASE's in the same run.
ratio() {
  awk -v s="$1" -v b="$2" -v k="$3" '
    $1 == s || $1 == b { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v[$1, $2] = kv[2] } }
    END { for (key in v) { split(key, p, SUBSEP); if (p[1] == s && ((b, p[2]) in v) && v[b, p[2]] + 0 > 0) print v[key] / v[b, p[2]] } }' "$RES" |
    median | awk '{ if ($1 == "-") print "-"; else printf "%.2f\n", $1 }'
}
echo
echo "UDP echo, median of $RUNS runs; $SIZE-byte datagrams; pingpong: $CONNS sockets x $WINDOW outstanding; flood: 1 socket; ${SECS} s after ${WARMUP} s"
printf '%-16s %10s %7s %11s %7s %9s %5s %5s\n' "server mode" "echoes/s" "x ref" "cpu us/dgm" "x ref" "lost" srv lg
for m in $MODES; do
  for s in $SERVERS; do
    printf '%-16s %10.0f %7s %11.3f %7s %9.0f %5.2f %5.2f\n' "$s $m" "$(get "$s-$m" rt_per_s)" \
      "$(ratio "$s-$m" "ref-$m" rt_per_s)" "$(get "$s-$m" srv_cpu_us_per_rt)" "$(ratio "$s-$m" "ref-$m" srv_cpu_us_per_rt)" \
      "$(get "$s-$m" lost)" "$(get "$s-$m" srv_util)" "$(get "$s-$m" lg_util)"
  done
done
echo "x ref: median over runs of the ratio to the reference's figure in the same run (echoes/s: higher is"
echo "  better; cpu us/dgm, the server's CPU time per datagram echoed: lower is better). lost: datagrams"
echo "  sent and never echoed (flood: what the kernel dropped for a full receive buffer). srv, lg: CPU"
echo "  seconds per second of the server and of loadgen."
echo "load: ${LG_PIN[*]} $BUILD/bench/loadgen -p PORT -u ... -P PID   (results: $RES)"
