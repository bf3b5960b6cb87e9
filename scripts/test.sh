#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/test-deps.sh), then runs the
# whole suite. Run it from anywhere; it works in the repository it lives in.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
# Most tests wait on sockets and child processes, not on the CPU: run three per core (libtest's
# default is one per core). RUST_TEST_THREADS set by the caller wins.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-$(($(nproc) * 3))}"
# The vendored forks (tiny_http, ureq-proto) are not workspace members; their tests run by name.
cargo test -p tiny_http --lib
cargo test -p ureq-proto --lib
exec cargo test "$@"
