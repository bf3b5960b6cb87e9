#!/usr/bin/env bash
# Two proxies side by side on the miss path, as bench/run.sh's row 2 loads them (`wrk -t2 -c50`,
# bench/request.json POSTed, one `bench_tool json-upstream` behind both): ROUNDS alternating
# rounds of D seconds (every second round B first), each round's req/s, B / A, and the
# machine's CPU a request over the round from /proc/stat (user and system, every process on
# every core: wrk, the upstream and the proxy together — what a throughput ratio on shared
# cores is made of). A throughput ratio swings ±10 % from round to round on a busy machine;
# the CPU a request holds better, and says which side a change moved.
#
#   bench/ab.sh                              # A: this build's relay (cache off, 64 workers),
#                                            # B: bench_tool blocking-proxy (row 2b)
#   AB_BIN=/path/to/llm-relay bench/ab.sh    # B: another relay build (an experiment)
#   PROFILE_BIN=/path/to/llm-relay bench/ab.sh   # A: another relay build (a before figure)
#   bench/ab.sh 7 4                          # ROUNDS=7 of D=4 s (default 5 of 5)
#
# Needs wrk (apt-get install wrk).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-5}
D=${2:-5}
command -v wrk >/dev/null || { echo "ab.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
NAME=ab
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
# shellcheck source=bench/measure.sh
. "$ROOT/bench/measure.sh"
bench_binaries

start_fixture "$RUN/upstream.out" json-upstream --body-file "$ROOT/bench/chat_completion.json"
UP=$FIXTURE

# Starts the relay BIN on a free port (cache off, 64 workers) and sets PORT to it (not a
# command substitution: its subshell would keep the relay's pid from the cleanup).
relay() { # BIN SIDE
  PORT=$("$TOOL" free-port)
  printf '{"listen": "127.0.0.1:%s", "upstream": "http://%s/v1", "workers": 64, "cache": {"enabled": false}}\n' \
    "$PORT" "$UP" >"$RUN/$2.json"
  "$1" --config "$RUN/$2.json" >/dev/null 2>"$RUN/$2.log" &
  PIDS+=($!)
  wait_health "$PORT" 100 0.1 || { echo "ab.sh: the relay of side $2 did not start" >&2; exit 1; }
}

relay "$BIN" a
A_PORT=$PORT
WHAT_A="relay $(basename "$BIN") (${PROFILE_BIN:-this build})"
if [ -n "${AB_BIN:-}" ]; then
  relay "$AB_BIN" b
  B_PORT=$PORT
  WHAT_B="relay $AB_BIN"
else
  B_PORT=$("$TOOL" free-port)
  "$TOOL" blocking-proxy --upstream "$UP" --listen "127.0.0.1:$B_PORT" >"$RUN/b.log" 2>&1 &
  PIDS+=($!)
  sleep 0.3
  WHAT_B="bench_tool blocking-proxy"
fi

# One round against PORT: prints "req/s user-µs system-µs" (CPU a request).
round() { # PORT SECONDS
  local before after rps
  before=($(machine_ticks))
  rps=$(BENCH_BODY_FILE=$ROOT/bench/request.json wrk -t2 -c50 -d"$2s" -s "$ROOT/bench/post.lua" \
    "http://127.0.0.1:$1/v1/chat/completions" | awk '/^Requests\/sec:/ { print $2 }')
  after=($(machine_ticks))
  echo "${rps%.*} $(cpu_us_per_request $((after[0] - before[0])) "$rps" "$2") $(cpu_us_per_request $((after[1] - before[1])) "$rps" "$2")"
}

round "$A_PORT" 1 >/dev/null # warm: connections, the upstream pools
round "$B_PORT" 1 >/dev/null
echo "ab.sh: A = $WHAT_A, B = $WHAT_B; wrk -t2 -c50, $ROUNDS rounds of $D s; CPU a request is the machine's (all processes, all cores)"
echo
echo "| round | A req/s | B req/s | B / A | A CPU a request (user + system) | B CPU a request (user + system) |"
echo "|---|---|---|---|---|---|"
ratios=() a_cpu=() b_cpu=()
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then a=($(round "$A_PORT" "$D")); b=($(round "$B_PORT" "$D"))
  else b=($(round "$B_PORT" "$D")); a=($(round "$A_PORT" "$D")); fi
  ratio=$(awk -v a="${a[0]}" -v b="${b[0]}" 'BEGIN { printf "%.3f", b / a }')
  ratios+=("$ratio")
  a_cpu+=("$(awk -v u="${a[1]}" -v y="${a[2]}" 'BEGIN { print u + y }')")
  b_cpu+=("$(awk -v u="${b[1]}" -v y="${b[2]}" 'BEGIN { print u + y }')")
  echo "| $r | ${a[0]} | ${b[0]} | $ratio | ${a[1]} + ${a[2]} µs | ${b[1]} + ${b[2]} µs |"
done
echo
echo "median B / A $(median "${ratios[@]}"); median CPU a request: A $(median "${a_cpu[@]}") µs, B $(median "${b_cpu[@]}") µs"
