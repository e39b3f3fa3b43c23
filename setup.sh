#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment with noseprint and its pinned dependencies.
# torch is pinned to 2.13.0, whose CPU wheel is on this machine's disk (an unpinned torch pulls a CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
