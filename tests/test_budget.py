"""What a bundle can make a verifier build is bounded before anything is built (issue 17, item 3)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from noseprint.circuits.budget import Budget, estimated_chunked_rows
from noseprint.core.bundle import Manifest
from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS, choose_chunking
from noseprint.core.layout import CircuitLayout, LayerShape

from tests.conftest import run_cli

DATA = Path(__file__).with_name("data")
BUNDLE = DATA / "bundle-v4"
SRS, LOGROWS = DATA / "dev-k12.srs", "12"


def test_the_estimate_bounds_the_real_rows_from_above():
    """The committed bundle's circuits (three chunk shapes, the encode circuit): each estimate is not below
    the circuit's real rows, nor far above."""
    manifest = Manifest.read(BUNDLE)
    real = [c["num_rows"] for c in manifest.chunk_circuits] + [manifest.encode_circuit["num_rows"]]
    estimates = estimated_chunked_rows(manifest.layout, manifest.chunking)
    assert len(real) == len(estimates) == 4
    for rows, estimate in zip(real, estimates, strict=True):
        assert rows <= estimate <= 3 * rows, (real, estimates)


def test_the_audits_layouts_are_over_the_default_budget():
    big = LayerShape(hidden=1024, heads=16, kv_heads=16, head_dim=64, ffn=4096, gated=True)
    mid = CircuitLayout(tokens=256, hidden=1024, layers=(big, big), term_shifts=(0,) * 6)
    assert max(estimated_chunked_rows(mid, choose_chunking(mid, DEFAULT_CHUNK_WEIGHTS))) > Budget().max_rows


def forged_layout(target: Path) -> Path:
    """The committed bundle claiming the audit's mid-size layout (256 tokens, hidden 1024), consistently
    enough to reach the circuit check: 256 token ids, hashes updated, signature dropped."""
    shutil.copytree(BUNDLE, target)
    for name in ("attestation.dsse.json", "signer.pub"):
        (target / name).unlink()
    manifest = json.loads((target / "manifest.json").read_text())
    layer = {"hidden": 1024, "heads": 16, "kv_heads": 16, "head_dim": 64, "ffn": 4096, "gated": True}
    manifest["circuit"]["layout"] = {"tokens": 256, "hidden": 1024, "layers": [layer, layer], "term_shifts": [0] * 6}
    manifest["tokens"]["count"] = 256
    tokens = {"tokens": [{"id": i} for i in range(256)]}  # bare ids: an owner's list, checked no further
    (target / "tokens.json").write_text(json.dumps(tokens))
    manifest["files"]["tokens.json"] = hashlib.sha256((target / "tokens.json").read_bytes()).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_an_oversized_layout_is_refused_before_anything_is_built(tmp_path):
    home = tmp_path / "auditor"
    run_cli("srs", "import", str(SRS), "--logrows", LOGROWS, home=home, check=True)
    started = time.perf_counter()
    result = run_cli("verify", str(forged_layout(tmp_path / "b")), "--json", home=home)
    seconds = time.perf_counter() - started
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["failed_check"] == "circuit", report
    assert "would need about" in report["reason"] and "--max-rows" in report["reason"]
    assert seconds < 30, f"the refusal took {seconds:.0f} s: something was built"
    assert not (home / "circuits").exists() or not any((home / "circuits").iterdir())


@pytest.mark.proof
def test_building_runs_in_a_worker_under_a_memory_limit(tmp_path):
    """Out of memory kills the worker, not the verifier: a refusal, and no staging folder left behind."""
    home = tmp_path / "auditor"
    run_cli("srs", "import", str(SRS), "--logrows", LOGROWS, home=home, check=True)
    result = run_cli("verify", str(BUNDLE), "--json", home=home, env={"NOSEPRINT_MAX_MEMORY_GB": "0.5"})
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["failed_check"] == "circuit", report
    assert "within this verifier's limits" in report["reason"]
    leftovers = [p for folder in ("circuits", "keys") for p in (home / folder).glob(".*")] if home.exists() else []
    assert leftovers == []
    again = run_cli("verify", str(BUNDLE), "--json", home=home)  # default limits: the same bundle verifies
    assert again.returncode == 0, again.stdout
