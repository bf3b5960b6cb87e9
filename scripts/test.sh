#!/usr/bin/env bash
# The README's test command: installs what the tests need (scripts/test-deps.sh), then runs the
# whole suite. Run it from anywhere; it works in the repository it lives in.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
exec cargo test "$@"
