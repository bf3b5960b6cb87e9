#!/bin/sh
# Builds the fully static release binary (glibc, crt-static; no musl toolchain needed).
# Usage: scripts/build-static.sh [TARGET_DIR [CARGO_BUILD_ARGS...]]   (default: target/static)
#   e.g. scripts/build-static.sh target/static --example bench_tool  (the tests' one release build)
# Prints the binary's path as its last line:
#   TARGET_DIR/x86_64-unknown-linux-gnu/release/llm-relay
set -eu
cd "$(dirname "$0")/.."
target_dir="${1:-target/static}"
[ $# -gt 0 ] && shift
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
  --target x86_64-unknown-linux-gnu --target-dir "$target_dir" --bin llm-relay "$@" >&2
echo "$target_dir/x86_64-unknown-linux-gnu/release/llm-relay"
