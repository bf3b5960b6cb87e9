#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust and Python: Debian packages, the Python packages
# of tests/requirements.txt, and the npm packages of tests/e2e/package.json (when there is one).
# As root it installs; otherwise it prints the exact command to run and fails. Each step is
# skipped when already satisfied, so on a warm machine it takes a second or two and changes
# nothing. Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

root=0
[[ $(id -u) == 0 ]] && root=1
need() { # MESSAGE: what is missing and the command that installs it; fails
  echo "scripts/test-deps.sh: $1" >&2
  exit 1
}
for tool in cargo python3; do
  command -v "$tool" >/dev/null 2>&1 || need "$tool is not on PATH; the tests need Rust (cargo) and Python 3"
done

# Debian packages: command the tests run → package that provides it.
declare -A want=(
  [nginx]=nginx [wrk]=wrk [curl]=curl [redis-server]=redis-server
  [unshare]=util-linux [prlimit]=util-linux [ldd]=libc-bin [node]=nodejs [npm]=npm
  [chromium]=chromium [chromedriver]=chromium-driver [strace]=strace
)
python3 -m pip --version >/dev/null 2>&1 || want[pip]=python3-pip
missing=()
for cmd in $(printf '%s\n' "${!want[@]}" | sort); do
  if [[ $cmd == pip ]] || { ! command -v "$cmd" >/dev/null 2>&1 && ! test -x "/usr/sbin/$cmd"; }; then
    missing+=("${want[$cmd]}")
  fi
done
if ((${#missing[@]})); then
  ((root)) || need "missing ${missing[*]}; install them with:
  sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages, when one in tests/requirements.txt is not installed. Debian's own python
# refuses pip installs outside a virtual environment (PEP 668) unless told otherwise.
if ! python3 - <<'PY' 2>/dev/null; then
import importlib.metadata as m, re
for line in open("tests/requirements.txt"):
    name = re.split(r"[<>=!~\[ ;#]", line.strip(), maxsplit=1)[0]
    if name:
        m.version(name)
PY
  pip=(python3 -m pip install -q --no-warn-script-location -r tests/requirements.txt)
  ((root)) || pip+=(--user)
  "${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages ||
    need "could not install the Python packages; run: ${pip[*]}"
fi

# npm packages for the end-to-end tests, into tests/e2e/node_modules (no root needed).
if [[ -f tests/e2e/package.json ]] &&
  [[ ! -e tests/e2e/node_modules/.installed ||
    tests/e2e/package.json -nt tests/e2e/node_modules/.installed ||
    tests/e2e/package-lock.json -nt tests/e2e/node_modules/.installed ]]; then
  # `npm ci` installs exactly package-lock.json; --prefer-offline takes what npm's cache already
  # holds without asking the registry again (a fresh clone on a machine that ran this before).
  (cd tests/e2e && npm ci --prefer-offline --no-audit --no-fund --loglevel=error &&
    touch node_modules/.installed)
fi
