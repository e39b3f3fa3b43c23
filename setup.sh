#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment with noseprint and its pinned dependencies.
# torch is pinned to 2.13.0, whose CPU wheel is on this machine's disk (an unpinned torch pulls a CUDA build).
#   ./setup.sh          noseprint with the registry extra (database and web stack) and the cluster extra (Ray,
#                       for `prove --ray`): everything a user runs
#   ./setup.sh --test   also what the tests need: the test extra (pytest, ruff, mypy, ...) and, from Debian,
#                       PostgreSQL (a real server the tests start on loopback) and Chromium (the web pages are
#                       driven in it by Playwright)
# An auditor who only verifies can skip the extra: pip install -e .   (the registry then says what is missing)
set -euo pipefail
cd "$(dirname "$0")"
extras="registry,cluster"
if [[ "${1:-}" == "--test" ]]; then
  extras="registry,cluster,test"
  missing=()
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  if ((${#missing[@]})); then
    sudo=""; [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"  # the versions the suite last passed with
