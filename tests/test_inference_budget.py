"""Issue 33, item 4: `verify-inference` and `registry inference` bound the circuits they build, as `verify` does.

The owner's proofs folder chooses `layer_parts`; `null` asks for whole-layer circuits, and a 7B layer whole is
about 250M rows. The verifier estimates every inference circuit's rows from the shape, the parts, the challenge's
length and the fingerprint's tokens (`circuits.budget.estimated_inference_rows`, checked here against EZKL's own
counts), refuses the largest above its budget before building anything, and builds the rest in the worker that
`verify` uses. Both commands go through `verify_inference`; the registry records nothing that did not pass."""

from __future__ import annotations

import json
import shutil
import time

import noseprint.circuits.worker as circuit_worker
import noseprint.verifier.challenge as inference
import pytest
from noseprint.circuits.budget import DEFAULT_MAX_ROWS, Budget, estimated_inference_rows
from noseprint.core.answers import Answers
from noseprint.core.bundle import Bundle
from noseprint.core.challenge import Challenge
from noseprint.core.chunks import Chunking
from noseprint.core.whole_model import InferenceShape, PartSizes, fingerprint_map, layer_pieces
from noseprint.registry.challenge_checks import report_errors

from tests.conftest import DATA

FIXTURE = DATA / "inference-v1"
LLAMA_7B_LAYERS = InferenceShape(vocab=32000, hidden=4096, layers=2, heads=32, kv_heads=32, head_dim=128,
                                 ffn=11008, rope_theta=10000)  # fmt: skip
WIDE = InferenceShape(vocab=63, hidden=1024, layers=2, heads=8, kv_heads=8, head_dim=128, ffn=2816, rope_theta=10000)
"""Two layers 1,024 wide (12.8M weights each) under the fixture's vocabulary and layer count, so its challenge,
tokens and list of proofs fit (a wider model would need more head proofs), cut by its chunking."""

COUNTED = [
    # (circuit, hidden, tokens, rows EZKL counts): head_dim 8, one K/V head per two query heads, FFN 2x hidden
    # (parts: one K/V head, 8 FFN rows), `circuits.challenge_circuits.probe_rows`' settings, 2026-12 (issue 33)
    ("layer", 16, 8, 172_432), ("layer", 16, 32, 841_672), ("layer", 32, 16, 730_432), ("layer", 64, 16, 1_467_600),
    ("attention", 32, 8, 106_249), ("attention", 32, 32, 579_397), ("ffn", 32, 8, 62_496), ("ffn", 32, 32, 246_396),
    ("head", 16, 8, 187_263), ("head", 64, 32, 879_291), ("head", 128, 8, 292_543), ("head", 16, 64, 1_468_235),
    ("embed", 16, 8, 63_752), ("embed", 64, 32, 316_448), ("embed", 16, 64, 968_712),
    ("link", 16, 16, 162_751), ("link", 64, 32, 467_055), ("link", 16, 64, 1_044_031),
]  # fmt: skip


@pytest.mark.parametrize(("circuit", "hidden", "tokens", "rows"), COUNTED)
def test_the_estimate_is_just_above_what_ezkl_counts(circuit, hidden, tokens, rows):
    heads = hidden // 8
    shape = InferenceShape(vocab=64, hidden=hidden, layers=1, heads=heads, kv_heads=heads // 2, head_dim=8,
                           ffn=2 * hidden, rope_theta=10000)  # fmt: skip
    parts = circuit in ("attention", "ffn")
    chunking = Chunking(kv_heads=1, ffn_rows=8) if parts else Chunking(kv_heads=shape.kv_heads, ffn_rows=shape.ffn)
    layer = layer_pieces(shape, chunking, {})[0]
    estimate = estimated_inference_rows(shape, layer, PartSizes(1, 1) if parts else None, tokens, tokens)[circuit]
    assert rows <= estimate <= 1.02 * rows


def test_a_7b_layer_is_about_250m_rows_whole_and_its_parts_far_fewer():
    chunking = Chunking(kv_heads=1, ffn_rows=32)
    layer = layer_pieces(LLAMA_7B_LAYERS, chunking, {})[0]
    whole = estimated_inference_rows(LLAMA_7B_LAYERS, layer, None, 8, 16)
    assert 240e6 < whole["layer"] < 260e6 and max(whole, key=lambda name: whole[name]) == "layer"
    parts = estimated_inference_rows(LLAMA_7B_LAYERS, layer, PartSizes(attention=8, ffn=43), 8, 16)
    assert set(parts) == {"attention", "ffn", "head", "embed", "link"} and max(parts.values()) < 30e6


def _forged_proofs(tmp_path):
    """The fixture's proofs folder, its listing saying `layer_parts: null` (whole layers), answered honestly."""
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / "proofs", proofs)
    listing = json.loads((proofs / "inference.json").read_text())
    listing["layer_parts"] = None
    (proofs / "inference.json").write_text(json.dumps(listing))
    challenge = Challenge.read(proofs / "challenge.json")
    answers = Answers(challenge.digest(), "transcript:test", [[0] * challenge.length for _ in challenge.prompts])
    return proofs, answers


def test_whole_layers_of_a_large_model_are_refused_before_anything_is_built(tmp_path, monkeypatch):
    """A bundle whose model has two layers of 12.8M weights (its `verify` stood in for: that is the bundle's own,
    budgeted check) and proofs that ask for whole-layer circuits (about 24M rows): refused in the report, in
    well under a minute, with nothing built, keyed or started in a worker."""
    for variable in ("NOSEPRINT_MAX_ROWS", "NOSEPRINT_MAX_MEMORY_GB", "NOSEPRINT_MAX_SECONDS"):
        monkeypatch.delenv(variable, raising=False)
    bundle = Bundle.open(FIXTURE / "bundle")
    layers = [int(i) for i in bundle.manifest.inference["fingerprinted_layers"]]
    assert layer_pieces(WIDE, bundle.manifest.chunking, fingerprint_map(layers))  # the chunking cuts it
    monkeypatch.setattr(inference, "_verified_bundle", lambda *args: (bundle, WIDE, {}))
    built = []

    def forbidden(*args, **kwargs):
        built.append(args)
        raise AssertionError("a circuit was built or keyed")

    for module, name in (
        (inference, "build_inference"),
        (inference, "ensure_keys"),
        (circuit_worker, "derive_in_worker"),
    ):
        monkeypatch.setattr(module, name, forbidden)
    proofs, answers = _forged_proofs(tmp_path)
    started = time.perf_counter()
    report = inference.verify_inference(FIXTURE / "bundle", proofs, answers, srs_file=DATA / "dev-k14.srs")
    elapsed = time.perf_counter() - started
    assert not built
    assert not report.valid and report.failed_check == "proofs", report
    assert "largest inference circuit (layer)" in report.reason and f"allows {DEFAULT_MAX_ROWS:,}" in report.reason
    assert elapsed < 20, elapsed
    challenge = Challenge.read(proofs / "challenge.json")
    assert report_errors(report.to_dict(), challenge)[0].startswith("the inference check did not pass (proofs:")


def test_the_budget_is_the_callers(tmp_path, monkeypatch):
    """An explicit budget (or $NOSEPRINT_MAX_ROWS, as for `verify`) decides: the fixture's own toy circuits
    (about 190k rows at most) are refused under a 100k-row budget, before anything is built."""
    bundle = Bundle.open(FIXTURE / "bundle")
    shape = InferenceShape.from_dict(bundle.manifest.inference["shape"])
    monkeypatch.setattr(inference, "_verified_bundle", lambda *args: (bundle, shape, {}))
    monkeypatch.setattr(circuit_worker, "inference_ready", lambda job, srs: False)
    monkeypatch.setattr(circuit_worker, "derive_in_worker", lambda *args: pytest.fail("started a worker"))
    proofs, answers = _forged_proofs(tmp_path)
    report = inference.verify_inference(
        FIXTURE / "bundle", proofs, answers, srs_file=DATA / "dev-k14.srs", budget=Budget(max_rows=100_000)
    )
    assert report.failed_check == "proofs" and "allows 100,000" in report.reason, report


def test_the_worker_is_given_exactly_what_the_verifier_builds_from():
    """The worker fills the caches the verifier then reads: its job crosses the process boundary as JSON and must
    come back as the same arguments (every field of the shape), or the verifier would build in its own process."""
    from dataclasses import asdict

    import noseprint.circuits.srs as srs_store
    from noseprint.circuits.worker import _inference_args, inference_job

    bundle = Bundle.open(FIXTURE / "bundle")
    shape, chunking = InferenceShape.from_dict(bundle.manifest.inference["shape"]), bundle.manifest.chunking
    srs = srs_store.from_file(DATA / "dev-k14.srs", 14)
    for sizes in (None, PartSizes(attention=1, ffn=1)):
        job = json.loads(json.dumps(inference_job(shape, chunking, {0: 0, 1: 1}, 8, 16, 14, sizes, srs)))
        args = _inference_args(job)
        assert args == (shape, chunking, {0: 0, 1: 1}, 8, 16, 14, sizes) and asdict(args[0]) == asdict(shape)
