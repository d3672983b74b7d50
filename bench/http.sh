#!/usr/bin/env bash
# bench/http.sh: lupine's examples/http_hello.lua (inline: one loop, one Lua
# state) side by side with nginx + Lua (bench/nginx_http.conf: one worker,
# content_by_lua_block { ngx.say("hello") }), in one run, both pinned to CPU 0
# with wrk on CPU 1 (as bench/run). Cases: wrk -t1 -c50 (one request at a time
# per connection) and the same with 16 pipelined requests per send
# (bench/http_pipeline.lua). Then the RSS per idle keep-alive connection
# (bench/http_idle.py). Installs its bench-only packages (nginx-light,
# libnginx-mod-http-lua, wrk) when missing.
#
# Settings: HTTP_SECS (5) per run, HTTP_RUNS (3, medians), HTTP_CONNS (50),
# HTTP_DEPTH (16), HTTP_IDLE (5000 connections; 0 skips), BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SECS=${HTTP_SECS:-5} RUNS=${HTTP_RUNS:-3} CONNS=${HTTP_CONNS:-50} DEPTH=${HTTP_DEPTH:-16} IDLE=${HTTP_IDLE:-5000}
OUT=bench/out/http
mkdir -p "$OUT"
scripts/deps nginx-light libnginx-mod-http-lua wrk python3
echo "== building ($BUILD)"
{ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUPINE_BENCH=ON && cmake --build "$BUILD" -j "$JOBS" --target lupine_lua; } >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
TCK=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

spid= sport= smain=
# start_http NAME: sets spid (the process whose CPU counts), smain (the one to stop), sport.
start_http() {
  pin "$SRV_CPUS"
  case $1 in
  lupine)
    env PORT=0 "LUA_PATH=./lua/?.lua;./lua/?/init.lua;;" "LUA_CPATH=./$BUILD/lib/?.so;;" "${PIN[@]}" \
      lua5.4 examples/http_hello.lua >"$OUT/lupine.out" 2>"$OUT/lupine.err" &
    smain=$! spid=$smain sport=
    for _ in $(seq 200); do
      sport=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$OUT/lupine.out")
      [ -n "$sport" ] && break
      sleep 0.05
    done ;;
  nginx)
    sport=$(free_port)
    local dir; dir=$(realpath "$OUT")
    mkdir -p "$dir/nginx_body"
    sed -e "s#@PORT@#$sport#g" -e "s#@DIR@#$dir#g" bench/nginx_http.conf >"$OUT/nginx.conf"
    "${PIN[@]}" nginx -c "$(realpath "$OUT/nginx.conf")" -e "$dir/nginx.err" >"$OUT/nginx.out" 2>&1 &
    smain=$! spid=
    for _ in $(seq 200); do
      spid=$(pgrep -P "$smain" | head -1 || true)
      [ -n "$spid" ] && curl -s -o /dev/null "http://127.0.0.1:$sport/" && break
      sleep 0.05
    done ;;
  esac
  [ -n "$sport" ] && [ "$(curl -s "http://127.0.0.1:$sport/")" = hello ] || { echo "bench: $1 did not start or answer"; cat "$OUT/$1".*; exit 1; }
}
stop_http() { kill -TERM "$smain" 2>/dev/null || true; wait "$smain" 2>/dev/null || true; }

cpu_ticks() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{ s += $14 + $15 } END { print s }'; }

# run_wrk NAME CASE: one measured run; appends "rps cpu_us_per_req p50" to $OUT/NAME.CASE
run_wrk() {
  local name=$1 case=$2 args=()
  [ "$case" = pipelined ] && args=(-s bench/http_pipeline.lua)
  pin "$LG_CPUS"
  local c0; c0=$(cpu_ticks "$spid")
  DEPTH=$DEPTH "${PIN[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "${args[@]}" "http://127.0.0.1:$sport/" >"$OUT/wrk.txt" 2>&1
  local c1; c1=$(cpu_ticks "$spid")
  local reqs rps p50
  reqs=$(awk '/requests in/ { print $1 }' "$OUT/wrk.txt")
  rps=$(awk '/Requests\/sec/ { print $2 }' "$OUT/wrk.txt")
  p50=$(awk '$1 == "50%" { print $2 }' "$OUT/wrk.txt")
  if grep -q -e "Non-2xx" -e "Socket errors" "$OUT/wrk.txt"; then echo "bench: $name $case: errors"; cat "$OUT/wrk.txt"; fi
  echo "$rps $(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v n="$reqs" 'BEGIN { printf "%.3f", (b - a) / t * 1e6 / n }') $p50" >>"$OUT/$name.$case"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "== wrk -t1 -c$CONNS -d${SECS}s, $RUNS runs each, servers on CPU $SRV_CPUS, wrk on CPU $LG_CPUS"
for s in lupine nginx; do for c in plain pipelined; do : >"$OUT/$s.$c"; done; done
for r in $(seq "$RUNS"); do
  for s in lupine nginx; do
    start_http "$s"
    for c in plain pipelined; do run_wrk "$s" "$c"; done
    stop_http
  done
done

printf "\n%-10s %-28s %12s %8s %12s %8s %10s\n" case server "req/s" "x nginx" "cpu us/req" "x nginx" "p50"
for c in plain pipelined; do
  nr=$(cut -d' ' -f1 "$OUT/nginx.$c" | median); nc=$(cut -d' ' -f2 "$OUT/nginx.$c" | median)
  for s in lupine nginx; do
    r=$(cut -d' ' -f1 "$OUT/$s.$c" | median); u=$(cut -d' ' -f2 "$OUT/$s.$c" | median); p=$(cut -d' ' -f3 "$OUT/$s.$c" | sort | head -1)
    label=$([ "$s" = lupine ] && echo "lupine http_hello (inline)" || echo "nginx + Lua (1 worker)")
    printf "%-10s %-28s %12.0f %8.2f %12.3f %8.2f %10s\n" "$c" "$label" "$r" "$(awk -v a="$r" -v b="$nr" 'BEGIN{print a/b}')" \
      "$u" "$(awk -v a="$u" -v b="$nc" 'BEGIN{print a/b}')" "$p"
  done
done

if [ "$IDLE" -gt 0 ]; then
  echo
  echo "== idle keep-alive connections: $IDLE, one request each, then held (RSS of the serving process)"
  for s in lupine nginx; do
    start_http "$s"
    printf "%-28s %s\n" "$s" "$(python3 bench/http_idle.py "$sport" "$IDLE" "$spid")"
    stop_http
  done
fi
