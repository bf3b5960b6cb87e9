#!/usr/bin/env bash
# Where the relay's CPU goes, natively: `perf record` samples every thread of the relay (kernel
# and user space) while C keep-alive connections send requests as fast as answers come
# (`bench_tool load --count`), then prints the share of the samples
#   - by where the code lies: the kernel, the relay's binary, libc (malloc and free, memcpy), vDSO;
#   - of each system call, with what runs under it (a blocking `recvfrom` includes the switch to
#     another thread and back: `finish_task_switch` is where the kernel books that);
#   - of the 20 functions with the most samples of their own.
# What callgrind (`bench/profile.sh`) cannot show: the kernel's side, and SHA-256 as the CPU
# runs it (callgrind's CPU has no SHA extensions, so it counts sha2's software rounds). Shares
# hold better than times on a busy machine; compare them between runs on a quiet one.
#
#   bench/perf_profile.sh               # N=200000 misses (cache off), C=50
#   bench/perf_profile.sh 200000 50 hit # memory hits
#   bench/perf_profile.sh 200000 50 floor   # not the relay: `bench_tool blocking-proxy` (row 2b)
#   PROFILE_BIN=/path/to/llm-relay bench/perf_profile.sh   # another build
#   WORKERS=32 bench/perf_profile.sh    # the relay's `workers` (default 64, as bench/run.sh's
#                                       # miss rows: more than 4/3 of the connections)
#
# Needs perf (apt-get install linux-perf) and perf_event_paranoid ≤ 1 or root.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-200000}
C=${2:-50}
MODE=${3:-miss}
W=5000
command -v perf >/dev/null || { echo "perf_profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
NAME=perf_profile
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_binaries

load_mode "$MODE"
if [ "$MODE" != floor ]; then WHAT="$WHAT, ${WORKERS:-64} workers"; fi

port=$("$TOOL" free-port)
server_command "$MODE" "$port" "${WORKERS:-64}" "$RUN/relay.json"
"${SERVER[@]}" >/dev/null 2>"$RUN/relay.log" &
pid=$!
PIDS+=("$pid")
wait_health "$port" 100 0.1 || true

load() { # COUNT
  "$TOOL" load --url "http://127.0.0.1:$port/v1/chat/completions" --body-file "$BODY" \
    $UNIQUE --connections "$C" --count "$1" >"$RUN/load-$1" 2>&1
  grep -q "errors=0 " "$RUN/load-$1" || {
    echo "perf_profile.sh: $(cat "$RUN/load-$1")" >&2
    exit 1
  }
}
load "$W" # warm: connections, the upstream pool, the cache entry
perf record -q -F 2999 -g -p "$pid" -o "$RUN/perf.data" >/dev/null 2>&1 &
rec=$!
sleep 0.5
load "$N"
kill -INT "$rec"
while kill -0 "$rec" 2>/dev/null; do sleep 0.1; done

report() { perf report -i "$RUN/perf.data" --stdio --percent-limit 0 -g none "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'; }
echo "perf_profile.sh: $WHAT, $N requests over $C connections; $(sed -n 's/^ok=[0-9]* errors=0 .*rps=\([0-9.]*\).*/\1 req\/s under perf/p' "$RUN/load-$N")"
echo
echo "share of samples by where the code lies:"
report --no-children --sort dso | awk '{printf "  %7s  %s\n", $1, $2}'
echo
echo "system calls, each with what runs under it:"
report --children --sort sym | awk '$4 ~ /^__x64_sys_/ {sub(/^__x64_sys_/, "", $4); printf "  %7s  %s\n", $1, $4}'
echo "  (of which the switch away and back, finish_task_switch: $(report --no-children --sort sym | awk '$3 ~ /^finish_task_switch/ {print $1; exit}'))"
echo
echo "the 20 functions with the most samples of their own:"
report --no-children --sort dso,sym | head -20 | awk '{d=$2; $1=$1; s=$1; $1=""; $2=""; $3=""; sub(/^ +/, ""); printf "  %7s  %-12s %s\n", s, d, substr($0, 1, 100)}'
