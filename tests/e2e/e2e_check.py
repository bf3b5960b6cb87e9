"""The one assertion helper of the end-to-end scripts beside it (run as `python3 SCRIPT.py`, so
this directory is on the import path): prints `ok   WHAT`, or exits non-zero with what differed."""

import sys


def check(what, got, expected):
    if got != expected:
        sys.exit(f"FAIL {what}: expected {expected!r}, got {got!r}")
    print(f"ok   {what}")
