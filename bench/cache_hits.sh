#!/usr/bin/env bash
# Benchmark (not a test): cache-hit throughput beside nginx serving the same bytes as a static
# file, and disk-hit latency with 1 k vs 1 M entries in the cache directory.
#
#   bench/cache_hits.sh                 # sizes 1000 and 1000000 (1 M entries = 2 M files, ~8 GB)
#   SIZES="1000 100000" bench/cache_hits.sh
#   ONLY=latency SIZES=1000000 bench/cache_hits.sh   # skip the throughput part
#
# Needs wrk, nginx and python3 (Debian: apt-get install -y wrk nginx). Everything runs on
# 127.0.0.1 in a temp directory that is removed at the end; the load generator shares the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 1000000"}
DURATION=${DURATION:-10s}
for tool in wrk nginx python3; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (apt-get install -y wrk nginx)"; exit 1; }
done
cargo build --release -q
BIN=$PWD/target/release/llm-relay
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ANSWER='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"The cached answer of the benchmark, long enough to look like a short real reply from a model."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}'
mkdir -p "$WORK/www" "$WORK/nginx"
printf '%s' "$ANSWER" > "$WORK/www/answer.json"
NGINX_PORT=$(free_port)
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /v1/chat/completions { default_type application/json; return 200 '$ANSWER'; }
    location / { root $WORK/www; default_type application/json; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
PIDS+=($!)

BODY='{"model":"m","messages":[{"role":"user","content":"benchmark question"}]}'
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
LUA

# Writes N filler entries (random keys, valid answers) into a cache directory.
fill() {
  python3 - "$1" "$2" "$ANSWER" <<'PY'
import os, sys, secrets
d, n, answer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
meta = '{"route":"/chat/completions","version":1,"created":1800000000}\n{}\n'
for i in range(n):
    k = secrets.token_hex(32)
    sub = os.path.join(d, k[:2])
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, k + ".txt"), "w") as f: f.write(answer)
    with open(os.path.join(sub, k + ".request"), "w") as f: f.write(meta)
PY
}

# Starts a relay on cache dir $1 with memory_items $2; sets RELAY_PORT.
start_relay() {
  RELAY_PORT=$(free_port)
  cat > "$WORK/relay.jsonc" <<CONF
{ "listen": "127.0.0.1:$RELAY_PORT", "upstream": "http://127.0.0.1:$NGINX_PORT/v1",
  "cache": { "dir": "$1", "memory_items": $2 } }
CONF
  "$BIN" --config "$WORK/relay.jsonc" >/dev/null 2>"$WORK/relay.log" &
  RELAY_PID=$!
  PIDS+=($RELAY_PID)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$RELAY_PORT/health" >/dev/null && break; sleep 0.1; done
  curl -s -o /dev/null -H 'Content-Type: application/json' -d "$BODY" \
    "http://127.0.0.1:$RELAY_PORT/v1/chat/completions"   # the one miss
}

summary() { grep -E 'Requests/sec|^ +50%|^ +99%' | tr -s ' ' | tr '\n' ' '; echo; }

if [ "${ONLY:-}" != latency ]; then
echo "== throughput, wrk -t2 -c50 -d$DURATION (same 2 cores as the servers)"
start_relay "$WORK/cache-small" 1000
printf 'llm-relay cache hit (memory tier): '
wrk -t2 -c50 -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$RELAY_PORT/v1/chat/completions" | summary
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
start_relay "$WORK/cache-small" 0
printf 'llm-relay cache hit (from disk):    '
wrk -t2 -c50 -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$RELAY_PORT/v1/chat/completions" | summary
kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
printf 'nginx static file, same bytes:      '
wrk -t2 -c50 -d"$DURATION" --latency "http://127.0.0.1:$NGINX_PORT/answer.json" | summary
fi

echo "== disk-hit latency by directory size, one connection, wrk -t1 -c1 -d$DURATION, memory_items 0"
for n in $SIZES; do
  dir="$WORK/cache-$n"
  mkdir -p "$dir"
  fill "$dir" "$n"
  start_relay "$dir" 0
  printf '%8s entries: ' "$n"
  wrk -t1 -c1 -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$RELAY_PORT/v1/chat/completions" | summary
  kill "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null || true
  rm -rf "$dir"
done
