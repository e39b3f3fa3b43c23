"""The README's default model against the issue's bars (minutes; run with `-m slow`, not by CI)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from noseprint.models.demo_model import write_demo_model

pytestmark = [pytest.mark.slow, pytest.mark.proof]


def test_default_model_proves_and_verifies_within_the_bars(tmp_path):
    model = write_demo_model(tmp_path / "model")
    env = {"NOSEPRINT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    started = time.perf_counter()
    proved = subprocess.run(
        [sys.executable, "-m", "noseprint.cli", "prove", str(model), "--out", str(tmp_path / "b"), "--init-dev-srs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    prove_seconds = time.perf_counter() - started
    assert proved.returncode == 0, proved.stderr
    assert prove_seconds < 600, f"prove took {prove_seconds:.0f} s (bar: 10 minutes)"
    started = time.perf_counter()
    verified = subprocess.run(
        [sys.executable, "-m", "noseprint.cli", "verify", str(tmp_path / "b"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["valid"]
    assert time.perf_counter() - started < 5
    size = sum(p.stat().st_size for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert size < 5 * 2**20
