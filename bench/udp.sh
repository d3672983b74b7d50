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
# Servers (bench/lib.sh):
#   udp_ref     bench/ref_udp_echo: recvfrom/sendto per datagram in C on libev (the ceiling)
#   udp_lupine  examples/udp_echo.lua inline (bench/udp_serve.lua): a Lua handler per
#               datagram, recvmmsg/sendmmsg batches
#
# Settings (environment): UDP_CONNS=4 UDP_SIZE=64 UDP_WINDOW=16 UDP_SECS=5
#   UDP_WARMUP=1 UDP_RUNS=3 UDP_MODES="pingpong flood" UDP_SERVERS="udp_ref udp_lupine"
#   BUILD=build (configured with -DLUPINE_BENCH=ON)
# Raw results go to bench/out/udp-<time>/.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/results.sh # median, res_get, res_ratio
CONNS=${UDP_CONNS:-4}
SIZE=${UDP_SIZE:-64}
WINDOW=${UDP_WINDOW:-16}
SECS=${UDP_SECS:-5}
WARMUP=${UDP_WARMUP:-1}
RUNS=${UDP_RUNS:-3}
MODES=${UDP_MODES:-pingpong flood}
SERVERS=${UDP_SERVERS:-udp_ref udp_lupine}
OUT=bench/out/udp-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
build_all "$OUT/build.log"
trap stop EXIT
pin "$LG_CPUS"
LG_PIN=("${PIN[@]}")

RES=$OUT/results.txt
: >"$RES"
for r in $(seq "$RUNS"); do
  for m in $MODES; do
    if [ "$m" = flood ]; then LG_ARGS=(-u -m flood -c 1 -s "$SIZE" -w "$WARMUP" -d "$SECS")
    else LG_ARGS=(-u -m pingpong -c "$CONNS" -s "$SIZE" -i "$WINDOW" -w "$WARMUP" -d "$SECS"); fi
    for s in $SERVERS; do
      if ! start "$s" "$OUT/$s-$m-$r"; then
        echo "udp: $s did not start: $why"
        exit 1
      fi
      if ! line=$(timeout $((${SECS%.*} + 30)) "${LG_PIN[@]}" "$LG" -p "$port" "${LG_ARGS[@]}" -P "$pid" 2>"$OUT/$s-$m-$r.lgerr"); then
        echo "run $r $m $s: FAILED: $(cat "$OUT/$s-$m-$r.lgerr")"
        exit 1
      fi
      stop
      echo "run $r $m $s: $line"
      echo "$s-$m $r $line" >>"$RES"
    done
  done
done

echo
echo "UDP echo, median of $RUNS runs; $SIZE-byte datagrams; pingpong: $CONNS sockets x $WINDOW outstanding; flood: 1 socket; ${SECS} s after ${WARMUP} s"
printf '%-20s %10s %7s %11s %7s %9s %5s %5s\n' "server mode" "echoes/s" "x ref" "cpu us/dgm" "x ref" "lost" srv lg
for m in $MODES; do
  for s in $SERVERS; do
    printf '%-20s %10.0f %7s %11.3f %7s %9.0f %5.2f %5.2f\n' "$s $m" "$(res_get "$s-$m" rt_per_s)" \
      "$(res_ratio "$s-$m" "udp_ref-$m" rt_per_s)" "$(res_get "$s-$m" srv_cpu_us_per_rt)" \
      "$(res_ratio "$s-$m" "udp_ref-$m" srv_cpu_us_per_rt)" "$(res_get "$s-$m" lost)" "$(res_get "$s-$m" srv_util)" "$(res_get "$s-$m" lg_util)"
  done
done
echo "x ref: median over runs of the ratio to the reference's figure in the same run (echoes/s: higher is"
echo "  better; cpu us/dgm, the server's CPU time per datagram echoed: lower is better). lost: datagrams"
echo "  sent and never echoed (flood: what the kernel dropped for a full receive buffer). srv, lg: CPU"
echo "  seconds per second of the server and of loadgen."
for s in $SERVERS; do echo "$s: $(server_label "$s"): $(server_line "$s")"; done
echo "load: ${LG_PIN[*]} $LG -p PORT -u ... -P PID   (results: $RES)"
