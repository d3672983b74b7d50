# bench/lib.sh: what bench/run, bench/memory and bench/callgrind share: the
# build, CPU pinning, the servers under test, starting and stopping them.
# Sourced from the repository root; sets BUILD, JOBS, REF, LG (the load generator
# lg_run drives: bench/loadgen; bench/lines.sh points it at bench/linegen).
BUILD=${BUILD:-build}
JOBS=${JOBS:-2}
REF=$BUILD/bench/ref_echo
REF_UDP=$BUILD/bench/ref_udp_echo
LG=$BUILD/bench/loadgen

# build_all LOGFILE: lupine (module and launcher), the reference and the load
# generator, RelWithDebInfo like `make build`, into $BUILD.
build_all() {
  echo "== building ($BUILD, RelWithDebInfo, -DLUPINE_BENCH=ON)"
  if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLUPINE_BENCH=ON &&
    cmake --build "$BUILD" -j "$JOBS" --target lupine lupine_lua ref_echo ref_udp_echo loadgen; } >"$1" 2>&1; then
    cat "$1"
    echo "bench: build failed"
    exit 1
  fi
}

# pin CPUS: the command prefix that pins to CPUS, in PIN. (A prefix, not a
# function that runs the command: `fn &` forks a subshell, and $! is its PID.)
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SRV_CPUS=0 SRV2_CPUS=0,1 LG_CPUS=1
  pin() { PIN=(taskset -c "$1"); }
else
  echo "bench: fewer than 2 CPUs or no taskset: running unpinned (figures mean less)"
  SRV_CPUS=- SRV2_CPUS=- LG_CPUS=-
  pin() { PIN=(); }
fi

# server_cmd NAME: the server's environment in SENV, its command in SCMD.
server_cmd() {
  SENV=()
  local luaenv=(PORT=0 "LUA_PATH=./lua/?.lua;./lua/?/init.lua;;" "LUA_CPATH=./$BUILD/lib/?.so;;")
  case $1 in
  ref) SCMD=("$REF" -p 0) ;;
  inline | echo) SENV=("${luaenv[@]}") SCMD=(lua5.4 examples/echo.lua) ;; # echo: bench/ws.sh, bench/lines.sh
  co) # the same echo written as a coroutine per connection (handle)
    SENV=("${luaenv[@]}") SCMD=(lua5.4 examples/co_echo.lua) ;;
  ws) SENV=("${luaenv[@]}") SCMD=(lua5.4 bench/ws_echo.lua) ;; # bench/ws.sh (loadgen -W)
  lines) SENV=("${luaenv[@]}" LINES=buffer) SCMD=(lua5.4 bench/line_echo.lua) ;; # bench/lines.sh
  lines-str) SENV=("${luaenv[@]}" LINES=string) SCMD=(lua5.4 bench/line_echo.lua) ;;
  co_w1) SCMD=("$BUILD/lupine" -p 0 -w 1 examples/co_echo.lua) ;;
  w0) SCMD=("$BUILD/lupine" -p 0 -w 0 examples/echo.lua) ;;
  w1) SCMD=("$BUILD/lupine" -p 0 -w 1 examples/echo.lua) ;;
  w2) SCMD=("$BUILD/lupine" -p 0 -w 2 examples/echo.lua) ;;
  w2rp) SCMD=("$BUILD/lupine" -p 0 -w 2 --reuseport examples/echo.lua) ;; # a listener per worker
  udp_ref) SCMD=("$REF_UDP" -p 0) ;; # UDP (bench/udp.sh)
  udp_lupine) # examples/udp_echo.lua's UDP side inline, on a free port
    SENV=("LUA_PATH=./lua/?.lua;./lua/?/init.lua;;" "LUA_CPATH=./$BUILD/lib/?.so;;")
    SCMD=(lua5.4 bench/udp_serve.lua) ;;
  *) echo "bench: unknown server '$1' (ref inline echo co co_w1 w0 w1 w2 w2rp udp_ref udp_lupine ws lines lines-str)"; exit 2 ;;
  esac
}
server_cpus() { [[ $1 == w2* ]] && echo "$SRV2_CPUS" || echo "$SRV_CPUS"; }
server_label() {
  case $1 in
  ref) echo "reference (C, libev, 1 thread)" ;;
  inline | echo) echo "lupine inline (lua5.4)" ;;
  co) echo "lupine co_echo inline (coroutines)" ;;
  co_w1) echo "lupine -w 1 co_echo (coroutines)" ;;
  w0) echo "lupine -w 0 (launcher, 1 loop)" ;;
  w1) echo "lupine -w 1" ;;
  w2) echo "lupine -w 2 (CPUs $SRV2_CPUS)" ;;
  w2rp) echo "lupine -w 2 --reuseport (CPUs $SRV2_CPUS)" ;;
  udp_ref) echo "reference UDP echo (C, libev, recvfrom/sendto)" ;;
  udp_lupine) echo "lupine examples/udp_echo.lua inline" ;;
  ws) echo "lupine bench/ws_echo.lua inline (WebSocket frames)" ;;
  lines) echo "lupine bench/line_echo.lua inline (lineFrame, Buffers)" ;;
  lines-str) echo "lupine bench/line_echo.lua inline (lineFrame, strings)" ;;
  esac
}
# server_line NAME: the command line as a shell would take it.
server_line() {
  server_cmd "$1"
  pin "$(server_cpus "$1")"
  local e=""
  [ ${#SENV[@]} -gt 0 ] && e="env $(printf '%q ' "${SENV[@]}")"
  echo "${PIN[*]:+${PIN[*]} }$e${SCMD[*]}"
}

pid= port= why=
# start NAME LOG [WRAPPER...]: starts the server (pinned, or under WRAPPER,
# e.g. valgrind), sets pid and port from its `listening on 127.0.0.1:PORT`
# line (LOG.out; stderr in LOG.err); on failure returns 1, the reason in why.
start() {
  local name=$1 log=$2 line
  shift 2
  server_cmd "$name"
  if [ $# -gt 0 ]; then PIN=("$@"); else pin "$(server_cpus "$name")"; fi
  # An exec chain (env, taskset, the server): $! is the server itself.
  env "${SENV[@]}" "${PIN[@]}" "${SCMD[@]}" >"$log.out" 2>"$log.err" &
  pid=$! port= why=
  for _ in $(seq 1200); do
    line=$(grep -m1 'listening on 127\.0\.0\.1:' "$log.out")
    if [ -n "$line" ]; then
      port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' <<<"$line")
      # Until the launcher has worker threads it serves -w N inline: not what we measure.
      if [[ $name == *w[1-9]* && $line == *inline* ]]; then
        why="the launcher has no worker threads yet: -w N served inline"
        stop
        return 1
      fi
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      why="exited: $(head -1 "$log.err" | cut -c1-200)"
      pid=
      return 1
    fi
    sleep 0.05
  done
  why="no 'listening on' line within 60 s"
  stop
  return 1
}

# stop: SIGTERM the server (callgrind writes its file then), SIGKILL after 30 s.
stop() {
  [ -z "$pid" ] && return
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
}

. bench/results.sh # median, res_get, res_ratio

# lg_run NAME RUN SECS LOADGEN_ARGS...: one measured run: start server NAME, drive
# it with $LG (pinned to LG_CPUS, -P its PID), stop it; prints the result
# and appends `NAME RUN key=value ...` to $RES (logs under $OUT); exits on failure.
lg_run() {
  local s=$1 r=$2 secs=$3 line
  shift 3
  if ! start "$s" "$OUT/$s-$r"; then echo "run $r $s: $why"; exit 1; fi
  pin "$LG_CPUS"
  if ! line=$(timeout $((${secs%.*} + 60)) "${PIN[@]}" "$LG" -p "$port" "$@" -P "$pid" 2>"$OUT/$s-$r.lgerr"); then
    echo "run $r $s: FAILED: $(cat "$OUT/$s-$r.lgerr")"
    stop
    exit 1
  fi
  stop
  echo "run $r $s: $line"
  echo "$s $r $line" >>"$RES"
}
