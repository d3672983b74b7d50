#!/usr/bin/env bash
# bench/files.sh: a FILE_MB-megabyte file served over HTTP by lupine -w 1 two
# ways in the same run (bench/files.lua): sendfile (res:send(200, lupine.file(path)))
# and buffer (the file read into memory per request and written from there),
# driven by wrk -t1 -cCONNS (pinned to CPU 1, the server to CPU 0). Prints the
# median of RUNS runs: bytes/s of body, the server's CPU time per megabyte sent
# and its utilisation, and the ratio to buffer in the same run.
#
# Settings (environment): FILE_MB=8 FILE_CONNS=4 FILE_SECS=5 FILE_RUNS=3 BUILD=build
# Raw results go to bench/out/files-<time>/. Needs wrk.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
MB=${FILE_MB:-8}
CONNS=${FILE_CONNS:-4}
SECS=${FILE_SECS:-5}
RUNS=${FILE_RUNS:-3}
OUT=bench/out/files-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "files: needs wrk (Debian: wrk)"; exit 1; }
build_all "$OUT/build.log"
FILE=$OUT/body.bin
head -c $((MB * 1048576)) /dev/urandom >"$FILE"
SIZE=$(stat -c %s "$FILE")

spid= sport=
stop_files() { [ -n "$spid" ] && kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null; spid=; }
trap stop_files EXIT
# utime+stime of every thread of the server, in clock ticks.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' /proc/"$1"/stat; }
TCK=$(getconf CLK_TCK)

RES=$OUT/results.txt
: >"$RES"
pin "$SRV_CPUS"
SRV_PIN=("${PIN[@]}")
pin "$LG_CPUS"
LG_PIN=("${PIN[@]}")
for r in $(seq "$RUNS"); do
  for s in sendfile buffer; do
    env FILE="$FILE" "${SRV_PIN[@]}" "$BUILD/lupine" -w 1 -p 0 bench/files.lua >"$OUT/$s-$r.out" 2>"$OUT/$s-$r.err" &
    spid=$! sport=
    for _ in $(seq 200); do
      sport=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$OUT/$s-$r.out")
      [ -n "$sport" ] && break
      sleep 0.05
    done
    [ -n "$sport" ] || { echo "files: the server did not start: $(head -3 "$OUT/$s-$r.err")"; exit 1; }
    curl -s -o "$OUT/check.bin" "http://127.0.0.1:$sport/$s" && cmp -s "$OUT/check.bin" "$FILE" ||
      { echo "files: /$s did not serve the file intact"; exit 1; }
    c0=$(cpu_ticks "$spid")
    "${LG_PIN[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$sport/$s" >"$OUT/$s-$r.wrk" 2>&1
    c1=$(cpu_ticks "$spid")
    stop_files
    if grep -q -e "Non-2xx" -e "Socket errors" "$OUT/$s-$r.wrk"; then echo "files: $s: errors"; cat "$OUT/$s-$r.wrk"; exit 1; fi
    rps=$(awk '/Requests\/sec/ { print $2 }' "$OUT/$s-$r.wrk")
    line=$(awk -v rps="$rps" -v size="$SIZE" -v a="$c0" -v b="$c1" -v t="$TCK" -v secs="$SECS" 'BEGIN {
      bps = rps * size; cpu = (b - a) / t
      printf "req_per_s=%.1f mb_per_s=%.1f srv_cpu_ms_per_mb=%.3f srv_util=%.2f", rps, bps / 1e6, cpu * 1e3 / (bps * secs / 1e6), cpu / secs }')
    echo "run $r $s: $line"
    echo "$s $r $line" >>"$RES"
  done
done

echo
echo "a $MB MiB file over HTTP: median of $RUNS runs; wrk -t1 -c$CONNS -d${SECS}s; lupine -w 1 on CPU $SRV_CPUS, wrk on CPU $LG_CPUS"
printf '%-9s %8s %9s %8s %14s %8s %5s\n' way "req/s" "MB/s" "x buffer" "cpu ms/MB" "x buffer" srv
for s in sendfile buffer; do
  printf '%-9s %8.1f %9.1f %8s %14.3f %8s %5.2f\n' "$s" "$(res_get "$s" req_per_s)" "$(res_get "$s" mb_per_s)" \
    "$(res_ratio "$s" buffer mb_per_s)" "$(res_get "$s" srv_cpu_ms_per_mb)" "$(res_ratio "$s" buffer srv_cpu_ms_per_mb)" \
    "$(res_get "$s" srv_util)"
done
echo "server: FILE=... ${SRV_PIN[*]} $BUILD/lupine -w 1 -p 0 bench/files.lua   (results: $RES; uptime: $(uptime | sed 's/.*load/load/'))"
