#!/usr/bin/env bash
# bench/tls.sh: lupine's TLS handler against nginx (Debian nginx-light), side
# by side in one run, under wrk, with the same ECDSA P-256 certificate, TLS 1.3
# only, one worker each: nginx one process (master_process off); lupine `-w 0`
# (the launcher with one loop: accepts and serves on the same thread, as nginx
# does) and `-w 1` (a boss thread accepts, one worker thread serves; both
# threads count in its CPU time).
#
# Cases (wrk -t1, BENCH_CONNS connections, BENCH_SECS seconds each):
#   big        GET /16k keep-alive: a 16 KiB body per request (TLS throughput)
#   handshake  GET / with "Connection: close": one full handshake per request
#   hello      GET / keep-alive: "hello\n" (HTTPS hello)
# lupine answers with bench/tls_http.lua, a bench-only responder standing in
# for its HTTP codec; nginx with a static file and `return 200`.
# Each case runs BENCH_RUNS times per server, alternating; the table shows the
# medians, the ratio lupine/nginx, and the server's CPU time per request
# (utime+stime of all its threads from /proc/PID/stat over the run).
# Settings: BENCH_SECS (5), BENCH_RUNS (3), BENCH_CONNS (50), BENCH_CASES
# ("big handshake hello"), BENCH_SERVERS ("nginx w0 w1"), BUILD (build). Server on CPU 0, wrk on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${BENCH_SECS:-5}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNS:-50}
CASES=${BENCH_CASES:-big handshake hello}
SERVERS=${BENCH_SERVERS:-nginx w0 w1}
OUT=bench/out/tls
for p in nginx wrk openssl; do
  command -v "$p" >/dev/null || { echo "bench/tls.sh: needs $p (Debian: nginx-light wrk openssl)"; exit 2; }
done
[ -x "$BUILD/lupine" ] || { echo "bench/tls.sh: build first ($BUILD/lupine)"; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT/www" "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)

# The certificate both servers use: ECDSA P-256, self-signed, for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$OUT/key.pem" -out "$OUT/cert.pem" \
  -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
head -c 16384 /dev/zero | tr '\0' x >"$OUT/www/16k"

if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SRV_PIN=(taskset -c 0) LG_PIN=(taskset -c 1)
else
  SRV_PIN=() LG_PIN=()
  echo "bench/tls.sh: fewer than 2 CPUs or no taskset: unpinned"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench/tls.sh: nothing listens on $1"
  return 1
}

pid= port=
start_nginx() {
  port=$(free_port)
  cat >"$OUT/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
error_log $OUT/nginx.err warn;
pid $OUT/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT/tmp; proxy_temp_path $OUT/tmp; fastcgi_temp_path $OUT/tmp;
  uwsgi_temp_path $OUT/tmp; scgi_temp_path $OUT/tmp;
  keepalive_requests 100000000;
  sendfile on; tcp_nopush on; tcp_nodelay on; # its fastest static path (without them: 1/3 the rate on /16k)
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $OUT/cert.pem;
    ssl_certificate_key $OUT/key.pem;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    root $OUT/www;
    location = /16k { default_type application/octet-stream; }
    location / { return 200 "hello\n"; }
  }
}
EOF
  "${SRV_PIN[@]}" nginx -c "$OUT/nginx.conf" -e "$OUT/nginx.err" >"$OUT/nginx.out" 2>&1 &
  pid=$!
  wait_port "$port"
}

start_w0() { start_lupine 0; }
start_w1() { start_lupine 1; }
start_lupine() { # workers
  env TLS_CERT="$OUT/cert.pem" TLS_KEY="$OUT/key.pem" "${SRV_PIN[@]}" "$BUILD/lupine" -w "$1" -p 0 --log-level error \
    bench/tls_http.lua >"$OUT/lupine.out" 2>"$OUT/lupine.err" &
  pid=$!
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$OUT/lupine.out")
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "bench/tls.sh: lupine did not start:"
  cat "$OUT/lupine.err"
  return 1
}

stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_case SERVER CASE: one wrk run; prints "req_per_s mb_per_s cpu_us_per_req errors".
run_case() {
  local server=$1 case=$2 path=/ hdr=()
  case $case in
  big) path=/16k ;;
  handshake) hdr=(-H "Connection: close") ;;
  hello) ;;
  esac
  "start_$server"
  local t0 t1 out rps tps errs
  t0=$(cpu_ticks "$pid")
  out=$("${LG_PIN[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "${hdr[@]}" "https://127.0.0.1:$port$path" 2>&1)
  t1=$(cpu_ticks "$pid")
  stop
  echo "$out" >>"$OUT/wrk-$server-$case.log"
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
  tps=$(sed -n 's/^Transfer\/sec: *\([0-9.]*\)\([KMG]\)B.*/\1 \2/p' <<<"$out")
  errs=$(sed -n 's/.*Socket errors: \(.*\)/\1/p; s/.*Non-2xx or 3xx responses: \([0-9]*\).*/non2xx=\1/p' <<<"$out" | tr '\n' ' ')
  local mb
  mb=$(awk -v t="$tps" 'BEGIN { split(t, a, " "); m = a[1]; if (a[2] == "K") m /= 1024; if (a[2] == "G") m *= 1024; printf "%.1f", m }')
  local hz
  hz=$(getconf CLK_TCK)
  awk -v r="${rps:-0}" -v d=$((t1 - t0)) -v hz="$hz" -v s="$SECS" -v mb="$mb" -v e="${errs:-}" \
    'BEGIN { printf "%.0f %s %.1f %s\n", r, mb, (r > 0 ? d / hz * 1e6 / (r * s) : 0), (e == "" ? "-" : e) }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "== bench/tls.sh: lupine vs nginx $(nginx -v 2>&1 | sed 's/.*\///'), TLS 1.3, ECDSA P-256, wrk -t1 -c$CONNS -d${SECS}s, $RUNS runs each"
printf '%-10s %-8s %12s %10s %14s  %-40s %s\n' case server "req/s" "MB/s" "cpu_us/req" "vs nginx" "wrk errors (last run)"
for case in $CASES; do
  declare -A R=() M=() C=() E=()
  for i in $(seq "$RUNS"); do
    for server in $SERVERS; do
      read -r r m c e <<<"$(run_case "$server" "$case")"
      R[$server]+="$r "
      M[$server]+="$m "
      C[$server]+="$c "
      E[$server]=$e
    done
  done
  base=
  for server in $SERVERS; do
    r=$(tr ' ' '\n' <<<"${R[$server]}" | grep . | median)
    m=$(tr ' ' '\n' <<<"${M[$server]}" | grep . | median)
    c=$(tr ' ' '\n' <<<"${C[$server]}" | grep . | median)
    [ "$server" = nginx ] && base=$r basecpu=$c
    ratio=$(awk -v a="$r" -v b="${base:-0}" -v c="$c" -v bc="${basecpu:-0}" \
      'BEGIN { if (b > 0 && c > 0) printf "%.2fx req/s, %.2fx CPU/req", a / b, c / bc; else printf "-" }')
    printf '%-10s %-8s %12s %10s %14s  %-40s %s\n' "$case" "$server" "$r" "$m" "$c" "$ratio" "${E[$server]}"
  done
  unset R M C E
done
