#!/usr/bin/env bash
# Write syscalls of streamed cache hits: N requests with `"stream": true` (the first a miss that
# stores the answer, the rest hits from the memory tier, each cut into 5 events), one keep-alive
# client connection, against the release binary under `strace -f -c`; prints strace's counts of
# write, writev, sendto and sendmsg, and the client's latencies (slowed by strace: compare runs
# of this script only).
#
#   bench/syscalls.sh            # N=500
#   PROFILE_BIN=/path/to/llm-relay bench/syscalls.sh 500   # another build (a before figure)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-500}
command -v strace >/dev/null || { echo "syscalls.sh: needs strace (apt-get install strace)" >&2; exit 1; }
NAME=syscalls
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_binaries


start_fixture "$RUN/upstream.out" json-upstream --body-file "$ROOT/bench/chat_completion.json"
UP=$FIXTURE
port=$("$TOOL" free-port)
printf '{"listen": "127.0.0.1:%s", "upstream": "http://%s/v1", "workers": 4, "cache": {"enabled": true, "dir": "%s"}}\n' \
  "$port" "$UP" "$RUN/cache" >"$RUN/relay.json"
sed 's/"temperature":0}/"temperature":0,"stream":true}/' "$ROOT/bench/request.json" >"$RUN/stream.json"

strace -f -c -e trace=write,writev,sendto,sendmsg -o "$RUN/strace.txt" \
  "$BIN" --config "$RUN/relay.json" >/dev/null 2>"$RUN/relay.log" &
PIDS+=($!)
wait_health "$port" 100 0.1 || true
"$TOOL" load --url "http://127.0.0.1:$port/v1/chat/completions" --body-file "$RUN/stream.json" \
  --connections 1 --count "$N"
# SIGTERM to the relay (strace's child): it drains and exits, and strace writes its counts
relay=$(pgrep -P "${PIDS[1]}" || true)
[ -n "$relay" ] && kill -TERM "$relay"
wait "${PIDS[1]}" || true
grep -E "calls|write|send|total" "$RUN/strace.txt"
