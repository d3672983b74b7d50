#!/usr/bin/env bash
# bench/workers.sh: echo ping-pong throughput of examples/echo.lua served
# inline (`lua5.4 examples/echo.lua`, one loop in the interpreter's thread)
# and by the launcher with -w 0, -w 1 and -w 2, measured by bench/pingpong.
# Modes alternate run by run, so that load from elsewhere on the machine
# spreads over all of them; each figure is the median of RUNS runs.
#
#   bench/workers.sh                       RUNS=3 CONNS=50 SIZE=64 SECS=5
#   RUNS=5 MODES="inline w2" bench/workers.sh
#
# Settings (environment): RUNS, CONNS, SIZE, SECS, WARMUP (0.5), MODES
# ("inline w0 w1 w2"), BUILD (build), PIN (unset: no pinning; "1": the server
# on CPU 0, or CPUs 0-1 for w2, and the load generator on the last CPU).
# Prints one line per run and a table of medians with the exact commands.
set -uo pipefail
set -f # the commands below hold ? and ; that must stay literal
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CONNS=${CONNS:-50}
SIZE=${SIZE:-64}
SECS=${SECS:-5}
WARMUP=${WARMUP:-0.5}
MODES=${MODES:-inline w0 w1 w2}
BUILD=${BUILD:-build}
PIN=${PIN:-}
NCPU=$(nproc)

echo "== building ($BUILD, RelWithDebInfo)"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build "$BUILD" -j "$NCPU" --target lupine lupine_lua pingpong >/dev/null; }; then
  echo "workers.sh: build failed" >&2
  exit 1
fi

server_cmd() { # mode -> the command line
  case $1 in
  inline) echo "env PORT=0 LUA_PATH=./lua/?.lua;./lua/?/init.lua;; LUA_CPATH=./$BUILD/lib/?.so;; lua5.4 examples/echo.lua" ;;
  w[0-9]*) echo "$BUILD/lupine -p 0 -w ${1#w} --log-level warn examples/echo.lua" ;;
  *) echo "workers.sh: unknown mode '$1' (inline w0 w1 w2 ...)" >&2; exit 2 ;;
  esac
}
server_pin() { # mode -> taskset prefix
  [ -n "$PIN" ] || return 0
  case $1 in w2) echo "taskset -c 0-1" ;; *) echo "taskset -c 0" ;; esac
}
LG_PIN=""
[ -n "$PIN" ] && LG_PIN="taskset -c $((NCPU - 1))"
LG="$BUILD/bench/pingpong -c $CONNS -s $SIZE -d $SECS -w $WARMUP"

out=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"; }
trap cleanup EXIT

run_one() { # mode -> prints round trips/s, or FAIL
  local mode=$1 port=
  rm -f "$out/srv.out" "$out/srv.err" # never read the last run's port
  # shellcheck disable=SC2046
  $(server_pin "$mode") $(server_cmd "$mode") >"$out/srv.out" 2>"$out/srv.err" &
  pid=$!
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$out/srv.out" 2>/dev/null)
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "FAIL (no start-up line: $(head -c 300 "$out/srv.err"))"
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
    return
  fi
  local line
  line=$($LG_PIN $LG -p "$port" 2>&1)
  kill -TERM "$pid"; wait "$pid"; local rc=$?; pid=
  local rate
  rate=$(sed -n 's/.*rt_per_s=\([0-9.]*\).*/\1/p' <<<"$line")
  if [ -z "$rate" ] || [ $rc -ne 0 ]; then echo "FAIL ($line; server exit $rc)"; else echo "$rate"; fi
}

declare -A results
for r in $(seq "$RUNS"); do
  for m in $MODES; do
    v=$(run_one "$m")
    echo "run $r $m: $v"
    results[$m]="${results[$m]:-} $v"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo
echo "ping-pong ${SIZE} B, ${CONNS} connections, ${SECS} s per run, median of ${RUNS} (round trips/s), $NCPU CPUs${PIN:+, pinned}:"
base=
for m in $MODES; do
  vals=${results[$m]}
  if grep -q FAIL <<<"$vals"; then
    printf "  %-7s FAILED\n" "$m"
    continue
  fi
  med=$(median <<<"$vals")
  [ -z "$base" ] && [ "$m" = inline ] && base=$med
  ratio=""
  [ -n "$base" ] && ratio=$(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.2fx inline", a / b}')
  printf "  %-7s %10.0f  %s   (runs:%s)\n" "$m" "$med" "$ratio" "$vals"
done
echo
echo "commands:"
for m in $MODES; do
  pin=$(server_pin "$m")
  echo "  $m: ${pin:+$pin }$(server_cmd "$m")"
done
echo "  load: ${LG_PIN:+$LG_PIN }$LG -p PORT"
