#!/usr/bin/env bash
# What fsync costs a miss with the cache on: the miss path (every request a new prompt, one
# keep-alive client connection, requests one after the other) against a relay with
# `cache.durability: "fsync"` and one with `"none"`, interleaved ROUNDS times, on the disk
# holding $TMPDIR. Wall-clock figures, so compare the two columns of one run only.
#
#   bench/fsync.sh             # 1000 misses per run, 3 rounds
#   bench/fsync.sh 500 5       # 500 misses, 5 rounds
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000}
ROUNDS=${2:-3}
NAME=fsync
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_binaries


start_fixture "$RUN/upstream.out" json-upstream --body-file "$ROOT/bench/chat_completion.json"
UP=$FIXTURE
sed 's/the benchmark\./the benchmark {n}./' "$ROOT/bench/request.json" >"$RUN/unique.json"

echo "| round | durability | misses/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
offset=0
for round in $(seq "$ROUNDS"); do
  for durability in fsync none; do
    port=$("$TOOL" free-port)
    printf '{"listen": "127.0.0.1:%s", "upstream": "http://%s/v1", "workers": 4, "cache": {"enabled": true, "dir": "%s", "durability": "%s"}}\n' \
      "$port" "$UP" "$RUN/cache-$durability" "$durability" >"$RUN/$durability.json"
    "$BIN" --config "$RUN/$durability.json" >/dev/null 2>"$RUN/$durability.log" &
    pid=$!
    PIDS+=("$pid")
    wait_health "$port" 100 0.05 || true
    out=$("$TOOL" load --url "http://127.0.0.1:$port/v1/chat/completions" --body-file "$RUN/unique.json" \
      --unique --offset "$offset" --connections 1 --count "$N")
    offset=$((offset + N))
    kill -TERM "$pid"
    wait "$pid" || true
    kv() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$out"; }
    echo "| $round | $durability | $(kv rps) | $(kv p50_ms) | $(kv p99_ms) |"
  done
done
