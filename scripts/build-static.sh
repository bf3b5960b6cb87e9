#!/bin/sh
# Builds the fully static binary (glibc, crt-static; no musl toolchain needed).
# Usage: [PROFILE=NAME] scripts/build-static.sh [TARGET_DIR [CARGO_BUILD_ARGS...]]
#   TARGET_DIR defaults to target/static; PROFILE to release (what the Dockerfile ships).
#   The system tests build PROFILE=static-check (Cargo.toml): the same static linking without
#   the release build's optimisation, which they never measure and a cold suite would pay for.
#   e.g. PROFILE=static-check scripts/build-static.sh target/static --example bench_tool
# Prints the binary's path as its last line:
#   TARGET_DIR/x86_64-unknown-linux-gnu/PROFILE_DIR/llm-relay  (release → release, dev → debug)
set -eu
cd "$(dirname "$0")/.."
target_dir="${1:-target/static}"
[ $# -gt 0 ] && shift
profile="${PROFILE:-release}"
case "$profile" in
  dev) profile_dir=debug ;;
  *) profile_dir="$profile" ;;
esac
RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile "$profile" --locked \
  --target x86_64-unknown-linux-gnu --target-dir "$target_dir" --bin llm-relay "$@" >&2
echo "$target_dir/x86_64-unknown-linux-gnu/$profile_dir/llm-relay"
