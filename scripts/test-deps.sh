#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust and Python: Debian packages (as root; otherwise
# it prints the exact command and fails), the Python packages of tests/requirements.txt, and the
# npm packages of tests/e2e/package.json. Each step is skipped when already satisfied, so a warm
# machine pays nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: command → package.
declare -A want=(
  [nginx]=nginx [wrk]=wrk [curl]=curl [redis-server]=redis-server
  [unshare]=util-linux [prlimit]=util-linux [ldd]=libc-bin [node]=nodejs [npm]=npm
)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! test -x "/usr/sbin/$cmd"; then
    missing+=("${want[$cmd]}")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the tests need: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Python packages. Debian's own python refuses system-wide pip installs (PEP 668).
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
  else
    echo "the tests need pip: sudo apt-get install -y python3-pip" >&2
    exit 1
  fi
fi
if ! python3 - <<'PY' 2>/dev/null
import importlib.metadata as m, re, sys
for line in open("tests/requirements.txt"):
    name = re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0]
    if name:
        m.version(name)
PY
then
  python3 -m pip install -q -r tests/requirements.txt 2>/dev/null ||
    python3 -m pip install -q --break-system-packages -r tests/requirements.txt
fi

# npm packages for the end-to-end tests (SDKs and agents), into tests/e2e/node_modules.
if [[ -f tests/e2e/package.json ]] && [[ tests/e2e/package.json -nt tests/e2e/node_modules/.installed ]]; then
  (cd tests/e2e && npm install --no-audit --no-fund --loglevel=error && touch node_modules/.installed)
fi
