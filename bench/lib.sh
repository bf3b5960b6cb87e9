# bench/lib.sh: what bench/profile.sh, fsync.sh and syscalls.sh share (sourced, never run): the
# release binaries, a working directory removed on exit with every process started, and
# starting a bench_tool fixture that prints `listening on http://ADDR`. The sourcing script
# sets NAME (its messages and working directory) and ROOT (the checkout) first.

# Builds the release binaries: BIN (or PROFILE_BIN, another build: a before figure) and TOOL.
bench_binaries() {
  (cd "$ROOT" && cargo build --quiet --release --bin llm-relay --example bench_tool)
  BIN=${PROFILE_BIN:-$ROOT/target/release/llm-relay}
  TOOL=$ROOT/target/release/examples/bench_tool
}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/llm-relay-$NAME.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${PROFILE_KEEP:-}" ]; then echo "$NAME: kept $RUN" >&2; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts `bench_tool ARGS...` with its output in OUT and sets FIXTURE to the address it
# listens on (fails after 5 s). OUT exists before the fixture's shell opens it, so the poll
# never reads a missing file (under `set -e` that would end the script).
start_fixture() { # OUT ARGS...
  local out=$1
  shift
  : >"$out"
  "$TOOL" "$@" >"$out" &
  PIDS+=($!)
  for _ in $(seq 100); do
    FIXTURE=$(sed -n 's#^listening on http://##p' "$out")
    [ -n "$FIXTURE" ] && return 0
    sleep 0.05
  done
  echo "$NAME: bench_tool $1 did not start" >&2
  return 1
}

# Waits until the relay on PORT answers `/health` (at most TRIES polls INTERVAL seconds apart).
wait_health() { # PORT TRIES INTERVAL
  local i
  for i in $(seq "$2"); do
    curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$1/health" && return 0
    sleep "$3"
  done
  return 1
}

# For the load scripts (switches.sh, perf_profile.sh): starts the json-upstream fixture and sets
# what MODE sends: UP (the upstream's address), CACHE (the relay's cache config), BODY, UNIQUE
# (`--unique` for a new prompt each request) and WHAT (the mode in words).
load_mode() { # MODE
  start_fixture "$RUN/upstream.out" json-upstream --body-file "$ROOT/bench/chat_completion.json"
  UP=$FIXTURE
  if [ -n "${UPSTREAM_HOST:-}" ]; then UP=$UPSTREAM_HOST:${UP##*:}; fi
  sed 's/the benchmark\./the benchmark {n}./' "$ROOT/bench/request.json" >"$RUN/unique.json"
  case $1 in
    miss) CACHE='{"enabled": false}' BODY=$RUN/unique.json UNIQUE=--unique WHAT="miss path, cache off${UPSTREAM_HOST:+, upstream $UPSTREAM_HOST}" ;;
    hit) CACHE="{\"enabled\": true, \"dir\": \"$RUN/cache\"}" BODY=$ROOT/bench/request.json UNIQUE="" WHAT="memory hits" ;;
    floor) CACHE="" BODY=$RUN/unique.json UNIQUE=--unique WHAT="bench_tool blocking-proxy (not the relay)" ;;
    *) echo "$NAME: MODE is miss, hit or floor" >&2; exit 1 ;;
  esac
}

# Sets SERVER to the command line of the server MODE tests on PORT: the relay with WORKERS
# workers (its config written to CONFIG), or for `floor` the blocking proxy.
server_command() { # MODE PORT WORKERS CONFIG
  printf '{"listen": "127.0.0.1:%s", "upstream": "http://%s/v1", "workers": %s, "cache": %s}\n' \
    "$2" "$UP" "$3" "$CACHE" >"$4"
  SERVER=("$BIN" --config "$4")
  if [ "$1" = floor ]; then SERVER=("$TOOL" blocking-proxy --upstream "$UP" --listen "127.0.0.1:$2"); fi
}
