#!/usr/bin/env bash
# Context switches and CPU time per request on the miss path (cache off; or, with MODE=hit,
# on memory-tier cache hits), counted by
# `perf stat` (software counters: they work where hardware counters are not supported) over the
# whole relay process, every thread. Like profile.sh, each figure is the difference of two runs
# (W and W + N requests) divided by N, so start-up and shutdown cancel out. C client
# connections send keep-alive requests as fast as answers come (`bench_tool load --count`); the
# upstream is `bench_tool json-upstream` answering bench/chat_completion.json.
#
# Context switches count the hand-offs between threads (a request handed to a worker, a
# connection handed back to tiny_http's pool) and every blocking read; they hold within a few
# percent on a busy machine. CPU time does not: compare it only between runs of this script on
# a quiet machine.
#
#   bench/switches.sh                 # N=20000, C=8
#   bench/switches.sh 5000 1          # N=5000 over one connection
#   bench/switches.sh 20000 8 hit     # cache hits from memory
#   bench/switches.sh 20000 8 floor   # not the relay: `bench_tool blocking-proxy`, the least a
#                                     # blocking thread-per-connection proxy does (row 2b)
#   PROFILE_BIN=/path/to/llm-relay bench/switches.sh   # another build (a before figure)
#   SYSCALLS=1 bench/switches.sh      # also system calls per request (the raw_syscalls
#                                     # tracepoint: needs perf_event_paranoid ≤ 1 or root)
#   WORKERS=64 bench/switches.sh 20000 50   # the relay's `workers` (default 32)
#   UPSTREAM_HOST=localhost bench/switches.sh   # the upstream named by a host name, not an IP
#                                     # (what a lookup per request costs: see resolve.rs)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-20000}
C=${2:-8}
MODE=${3:-miss}
W=2000
command -v perf >/dev/null || { echo "switches.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
NAME=switches
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_binaries

load_mode "$MODE"
if [ "$MODE" != floor ]; then WHAT="$WHAT, ${WORKERS:-32} workers"; fi

# Runs the relay under perf stat for COUNT requests; prints "switches task-clock-ms".
counts() { # COUNT
  local count=$1 port pid
  port=$("$TOOL" free-port)
  server_command "$MODE" "$port" "${WORKERS:-32}" "$RUN/relay-$count.json"
  perf stat -x, -e context-switches,task-clock${SYSCALLS:+,raw_syscalls:sys_enter} -o "$RUN/perf-$count.csv" \
    "${SERVER[@]}" >/dev/null 2>"$RUN/relay-$count.log" &
  pid=$!
  PIDS+=("$pid")
  wait_health "$port" 100 0.1 || true
  "$TOOL" load --url "http://127.0.0.1:$port/v1/chat/completions" --body-file "$BODY" \
    $UNIQUE --connections "$C" --count "$count" >"$RUN/load-$count" 2>&1
  grep -q "errors=0 " "$RUN/load-$count" || {
    echo "switches.sh: $(cat "$RUN/load-$count")" >&2
    exit 1
  }
  pkill -TERM -P "$pid" || true
  wait "$pid" || true
  awk -F, '$3=="context-switches"{s=$1} $3=="task-clock"{t=$1} $3=="raw_syscalls:sys_enter"{y=$1} END{print s, t, y+0}' "$RUN/perf-$count.csv"
}

a=($(counts "$W"))
b=($(counts $((W + N))))
awk -v n="$N" -v c="$C" -v what="$WHAT" -v s0="${a[0]}" -v s1="${b[0]}" -v t0="${a[1]}" -v t1="${b[1]}" \
  -v y0="${a[2]}" -v y1="${b[2]}" -v sys="${SYSCALLS:-}" 'BEGIN{
  calls = sys == "" ? "" : sprintf(" %.2f system calls |", (y1 - y0) / n)
  printf "| %s, %d connections | %.2f context switches | %.1f µs CPU |%s per request (N=%d) |\n",
    what, c, (s1 - s0) / n, (t1 - t0) * 1000 / n, calls, n }'
