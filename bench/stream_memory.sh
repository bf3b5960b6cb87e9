#!/usr/bin/env bash
# bench/stream_memory.sh: what open streams cost the relay. Starts the release relay in front of
# `bench_tool sse-upstream` (50 events 40 ms apart: each stream stays open ~2 s), opens N
# streams at once with `bench_tool streams`, and prints one line per N with the relay's peak RSS
# (VmHWM), its peak thread count (sampled every 50 ms), and the idle figures before the first N.
# Same relay setup as bench/run.sh's scenario 8 (workers = N + 24); a fresh relay per N.
#
#   bench/stream_memory.sh [N...]      default: 200 1000
#   BENCH_RELAY_BIN, BENCH_TOOL_BIN    use these binaries instead of building (both or neither)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(200 1000)

if [ -n "${BENCH_RELAY_BIN:-}" ] && [ -n "${BENCH_TOOL_BIN:-}" ]; then
  RELAY_BIN=$BENCH_RELAY_BIN TOOL=$BENCH_TOOL_BIN
else
  "${CARGO:-cargo}" build --release --quiet --bin llm-relay --example bench_tool
  target=$("${CARGO:-cargo}" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  RELAY_BIN=$target/release/llm-relay TOOL=$target/release/examples/bench_tool
fi
[ "$(ulimit -n)" -ge 4096 ] || ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"

RUN=$(mktemp -d "${TMPDIR:-/tmp}/llm-relay-streams.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT

die() { echo "bench/stream_memory.sh: $*" >&2; exit 1; }
field() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mb() { awk -v kb="$1" 'BEGIN{printf "%.1f", kb/1024}'; }
wait_line() { # FILE SED_EXPR → the first match, waiting up to 10 s
  local i v
  for i in $(seq 200); do
    v=$(sed -n "$2" "$1")
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.05
  done
  return 1
}

: >"$RUN/sse.out" # exists before the fixture's shell opens it: the poll never reads a missing file
"$TOOL" sse-upstream --events 50 --interval-ms 40 >"$RUN/sse.out" &
PIDS+=($!)
SSE=$(wait_line "$RUN/sse.out" 's#^listening on http://##p') || die "the SSE upstream did not start"

body='{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Count."}]}'
for n in "${COUNTS[@]}"; do
  port=$("$TOOL" free-port)
  printf '{"listen": "127.0.0.1:%s", "upstream": "http://%s/v1", "workers": %s, "trusted_proxies": ["127.0.0.1"]}\n' \
    "$port" "$SSE" $((n + 24)) >"$RUN/relay-$n.jsonc"
  : >"$RUN/relay-$n.out"
  "$RELAY_BIN" --config "$RUN/relay-$n.jsonc" >"$RUN/relay-$n.out" 2>"$RUN/relay-$n.err" &
  relay=$!
  PIDS+=("$relay")
  wait_line "$RUN/relay-$n.out" 's#^listening on ##p' >/dev/null || die "the relay did not start: $(tail -3 "$RUN/relay-$n.err")"
  curl -sf -o /dev/null "http://127.0.0.1:$port/health" || die "the relay does not answer /health"
  sleep 0.5
  idle_rss=$(field "$relay" VmHWM) idle_threads=$(field "$relay" Threads)
  "$TOOL" streams --url "http://127.0.0.1:$port/v1/chat/completions" --streams "$n" --body "$body" >"$RUN/streams-$n.out" &
  client=$!
  peak_threads=0
  while kill -0 "$client" 2>/dev/null; do
    t=$(field "$relay" Threads)
    [ "${t:-0}" -gt "$peak_threads" ] && peak_threads=$t
    sleep 0.05
  done
  wait "$client" || die "bench_tool streams failed"
  r=$(cat "$RUN/streams-$n.out")
  ok=$(echo "$r" | tr ' ' '\n' | sed -n 's/^ok=//p')
  errors=$(echo "$r" | tr ' ' '\n' | sed -n 's/^errors=//p')
  printf 'streams=%s ok=%s errors=%s idle_rss_mb=%s idle_threads=%s peak_rss_mb=%s peak_threads=%s\n' \
    "$n" "$ok" "$errors" "$(mb "$idle_rss")" "$idle_threads" "$(mb "$(field "$relay" VmHWM)")" "$peak_threads"
  kill "$relay" && wait "$relay" 2>/dev/null || true
done
