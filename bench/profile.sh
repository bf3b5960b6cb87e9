#!/usr/bin/env bash
# Instructions per request on the relay's four request paths, counted by callgrind (which holds
# on a busy machine, where wall-clock figures do not):
#   mem   a hit from the memory tier
#   disk  a hit from disk (memory tier off)
#   miss  a miss with the cache on (every request a new prompt: upstream call, then store)
#   off   a miss with the cache off (upstream call only)
#   sse   a streamed miss with the cache off: 50 chat chunks relayed (not in the default run)
#   sse-messages, sse-responses   the same stream translated for a `/v1/messages` or a
#         `/v1/responses` client (not in the default run)
#
#   bench/profile.sh            # N=2000 requests per path; prints one table row per path
#   bench/profile.sh 500 mem    # N=500, only the memory hit
#   PROFILE_KEEP=1 bench/profile.sh   # keeps the callgrind files (callgrind_annotate them)
#   PROFILE_BIN=/path/to/llm-relay bench/profile.sh   # profiles another build (a before figure)
#   PROFILE_SDK_HEADERS=1 bench/profile.sh   # each request also carries the 13 headers the
#                               # openai Python SDK sends (the default sends 3: Host,
#                               # Content-Type, Content-Length)
#
# Each path runs the release binary under `valgrind --tool=callgrind` twice, once serving W
# warm-up requests and once W + N, and divides the difference of the two instruction totals by
# N: start, warm-up and shutdown cancel out. One client connection, keep-alive, sends the
# requests one after the other (`bench_tool load --connections 1 --count`); the upstream is
# `bench_tool json-upstream` answering bench/chat_completion.json (599 bytes); for `sse`,
# `bench_tool sse-upstream --events 50 --interval-ms 0`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-2000}
shift || true
PATHS=("$@")
[ ${#PATHS[@]} -gt 0 ] || PATHS=(mem disk miss off)
W=50
SDK_HEADERS=()
if [ -n "${PROFILE_SDK_HEADERS:-}" ]; then
  for h in "Accept: application/json" "Accept-Encoding: gzip, deflate" "Connection: keep-alive" \
    "User-Agent: OpenAI/Python 1.109.1" "X-Stainless-Lang: python" \
    "X-Stainless-Package-Version: 1.109.1" "X-Stainless-OS: Linux" "X-Stainless-Arch: x64" \
    "X-Stainless-Runtime: CPython" "X-Stainless-Runtime-Version: 3.11.2" \
    "Authorization: Bearer sk-profile" "X-Stainless-Async: false" "X-Stainless-Retry-Count: 0"; do
    SDK_HEADERS+=(--header "$h")
  done
fi

command -v valgrind >/dev/null || { echo "profile.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
NAME=profile
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_binaries


start_fixture "$RUN/upstream.out" json-upstream --body-file "$ROOT/bench/chat_completion.json"
UP=$FIXTURE
start_fixture "$RUN/sse.out" sse-upstream --events 50 --interval-ms 0
SSE=$FIXTURE
sed 's/"temperature":0}/"temperature":0,"stream":true}/' "$ROOT/bench/request.json" >"$RUN/stream.json"
echo '{"model":"bench-model","max_tokens":1000,"stream":true,"messages":[{"role":"user","content":"Count."}]}' >"$RUN/stream-messages.json"
echo '{"model":"bench-model","stream":true,"input":"Count."}' >"$RUN/stream-responses.json"

# the same request as bench/run.sh; `{n}` makes each one a new prompt for the miss paths
sed 's/the benchmark\./the benchmark {n}./' "$ROOT/bench/request.json" >"$RUN/unique.json"

# Runs the relay under callgrind for COUNT requests of PATH and prints its instruction total.
instructions() { # PATH COUNT
  local path=$1 count=$2 port cache body=$ROOT/bench/request.json unique="" out pid up=$UP
  local route=/v1/chat/completions
  port=$("$TOOL" free-port)
  case $path in
    mem) cache="{\"enabled\": true, \"dir\": \"$RUN/cache-$path-$count\"}" ;;
    disk) cache="{\"enabled\": true, \"dir\": \"$RUN/cache-$path-$count\", \"memory_items\": 0}" ;;
    miss) cache="{\"enabled\": true, \"dir\": \"$RUN/cache-$path-$count\"}"; body=$RUN/unique.json; unique=--unique ;;
    off) cache="{\"enabled\": false}"; body=$RUN/unique.json; unique=--unique ;;
    sse) cache="{\"enabled\": false}"; body=$RUN/stream.json; up=$SSE ;;
    sse-messages | sse-responses)
      cache="{\"enabled\": false}"; body=$RUN/stream-${path#sse-}.json; up=$SSE; route=/v1/${path#sse-} ;;
    *) echo "profile.sh: unknown path $path (mem, disk, miss, off, sse, sse-messages, sse-responses)" >&2; exit 1 ;;
  esac
  printf '{"listen": "127.0.0.1:%s", "upstream": "http://%s/v1", "workers": 4, "cache": %s}\n' \
    "$port" "$up" "$cache" >"$RUN/$path-$count.json"
  out=$RUN/callgrind.$path.$count
  valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
    "$BIN" --config "$RUN/$path-$count.json" >/dev/null 2>"$RUN/$path-$count.log" &
  pid=$!
  PIDS+=("$pid")
  wait_health "$port" 600 0.1 || true
  "$TOOL" load --url "http://127.0.0.1:$port$route" --body-file "$body" $unique \
    "${SDK_HEADERS[@]}" --connections 1 --count "$count" >"$RUN/$path-$count.load" 2>&1
  grep -q "errors=0 " "$RUN/$path-$count.load" || {
    echo "profile.sh: $path: $(cat "$RUN/$path-$count.load")" >&2
    exit 1
  }
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p' "$out"
}

printf '| path | instructions per request (N=%s) |\n|---|---|\n' "$N"
for path in "${PATHS[@]}"; do
  a=$(instructions "$path" "$W")
  b=$(instructions "$path" $((W + N)))
  printf '| %s | %s |\n' "$path" $(((b - a) / N))
done
