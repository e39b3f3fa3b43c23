"""The chunked proof (issue 19): the split is exact, and a long prove survives a kill.

The first tests need no EZKL: the chunk plan tiles every tensor, and the chunk circuits' partial terms add up
to the invariant terms (the graph the proof proves, in float64) for every layer kind the adapters produce.
The last proves a model for real: on a local Ray cluster, killed with SIGKILL part-way, resumed with a local
pool, verified; and one of its chunk proofs spliced into another model's bundle is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
import pytest
import torch
from noseprint.circuits.chunk_graph import EncodeCircuit, partial_term
from noseprint.circuits.graph import FingerprintCircuit
from noseprint.core.chunks import BlockPiece, Chunking, choose_chunking, committed_pieces, plan_chunks, terms_chunks
from noseprint.core.layout import ROW, CircuitLayout, LayerShape
from noseprint.encoder.network import load_encoder

from tests.conftest import CHUNKING, TOKENS, chunky_llama, run_cli, save_tiny

DATA = Path(__file__).with_name("data")
FIXTURE = DATA / "bundle-v4"
SRS, LOGROWS = DATA / "dev-k12.srs", "12"
LAYOUTS = {
    "grouped-query, gated": LayerShape(hidden=24, heads=6, kv_heads=3, head_dim=4, ffn=48, gated=True),
    "multi-head, plain": LayerShape(hidden=32, heads=4, kv_heads=4, head_dim=8, ffn=64, gated=False),
    "multi-query, gated": LayerShape(hidden=32, heads=4, kv_heads=1, head_dim=8, ffn=96, gated=True),
}
CHUNKINGS = [Chunking(1, 16), Chunking(1, 8), Chunking(3, 48)]
COARSE, COARSE_CHUNKS = "3:16", 10
"""The Ray test's split of the chunky model: one attention chunk a term, three FFN chunks (the fixture's FFN
chunk shape), five a layer."""
KILL_AFTER = 2


def random_tensors(layout: CircuitLayout, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {piece.name: rng.standard_normal(piece.shape) for piece in layout.pieces()}


def with_blinding_line(values: np.ndarray, axis: int, rng: np.random.Generator) -> torch.Tensor:
    """The circuit's inputs carry a blinding line; the graph must slice it away."""
    line = rng.standard_normal((1, values.shape[1]) if axis == ROW else (values.shape[0], 1))
    return torch.from_numpy(np.concatenate([values, line], axis=0 if axis == ROW else 1))


def block(tensors: dict[str, np.ndarray], piece) -> np.ndarray:
    if not isinstance(piece, BlockPiece):
        return tensors[piece.name]
    whole = tensors[piece.tensor]
    return whole[piece.start : piece.stop] if piece.blinding_axis == ROW else whole[:, piece.start : piece.stop]


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("chunking", CHUNKINGS, ids=str)
def test_the_chunks_add_up_to_the_proven_terms(name, chunking):
    shape = LAYOUTS[name]
    layout = CircuitLayout(tokens=6, hidden=shape.hidden, layers=(shape, shape))
    if shape.kv_heads % chunking.kv_heads or shape.ffn % chunking.ffn_rows:
        pytest.skip("this chunking does not split this layer")
    tensors = random_tensors(layout, seed=3)
    rng = np.random.default_rng(4)
    chunks = plan_chunks(layout, chunking)
    partials = []
    for chunk in chunks:
        inputs = [with_blinding_line(block(tensors, p), p.blinding_axis, rng) for p in chunk.pieces]
        partials.append(partial_term(chunk.shape, *inputs))
    encoder = load_encoder(release.ENCODER).double()
    sums = EncodeCircuit(layout, terms_chunks(chunks), encoder).terms(partials)
    whole = [
        torch.from_numpy(with_blinding_line(tensors[p.name], p.blinding_axis, rng).numpy()) for p in layout.pieces()
    ]
    expected = FingerprintCircuit(layout, encoder).double().invariant_terms(*whole)
    assert len(sums) == len(expected) == 6
    for got, want in zip(sums, expected, strict=True):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_the_blocks_tile_every_tensor_once(name):
    shape = LAYOUTS[name]
    layout = CircuitLayout(tokens=6, hidden=shape.hidden, layers=(shape,))
    chunking = Chunking(1, 16)
    pieces = committed_pieces(plan_chunks(layout, chunking))
    for whole in layout.pieces():
        blocks = [p for p in pieces if isinstance(p, BlockPiece) and p.tensor == whole.name]
        if not blocks:
            assert whole.name in {p.name for p in pieces}, whole.name  # E and the norms are committed whole
            continue
        axis_length = whole.shape[0] if blocks[0].blinding_axis == ROW else whole.shape[1]
        covered = sorted((p.start, p.stop) for p in blocks)
        assert covered[0][0] == 0 and covered[-1][1] == axis_length
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False)), covered


def test_chunking_is_chosen_within_the_weights_and_refused_where_it_does_not_divide():
    shape = LAYOUTS["grouped-query, gated"]
    layout = CircuitLayout(tokens=8, hidden=24, layers=(shape,))
    chunking = choose_chunking(layout, max_weights=700)
    for chunk in plan_chunks(layout, chunking):
        weights = sum(p.weight_count for p in chunk.pieces[2:])
        assert weights <= 700 or chunking == Chunking(1, 1)
    with pytest.raises(ValueError, match="do not split"):
        plan_chunks(layout, Chunking(2, 16))


def chunk_files(work: Path) -> list[Path]:
    return sorted((work / "chunks").glob("*.json")) if (work / "chunks").is_dir() else []


@pytest.mark.proof
@pytest.mark.ray
def test_a_prove_on_ray_killed_part_way_resumes_and_verifies(tmp_path, fixture_home):
    """Prove on a local Ray cluster, SIGKILL the prover once chunks are on disk, resume with a local pool:
    only the missing chunks are proven, nothing written is corrupt, and the bundle verifies. A chunk proof of
    this bundle spliced into the committed fixture (same chunk plan, another model) is refused."""
    pytest.importorskip("ray")
    from bench.ray_local import local_cluster

    home = tmp_path / "home"
    run_cli("srs", "import", str(SRS), "--logrows", LOGROWS, home=home, check=True)
    model = save_tiny(chunky_llama(seed=1), tmp_path / "model")
    bundle, work = tmp_path / "bundle", tmp_path / "work"
    args = ["prove", str(model), "--out", str(bundle), "--n-tokens", TOKENS, "--chunking", COARSE]
    args += ["--work", str(work), "--json"]
    env = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}
    with local_cluster(head_cpus=2) as address:
        prover = subprocess.Popen(
            [sys.executable, "-m", "noseprint.cli", *args, "--ray", address],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 900
        while len(chunk_files(work)) < KILL_AFTER:
            assert prover.poll() is None, prover.communicate()
            assert time.monotonic() < deadline, "no chunk proof appeared"
            time.sleep(0.5)
        os.killpg(prover.pid, signal.SIGKILL)
        prover.wait()
    kept = chunk_files(work)
    assert not bundle.exists() and KILL_AFTER <= len(kept) < COARSE_CHUNKS
    for path in kept:
        json.loads(path.read_text())  # each file whole, never half-written
    resumed = run_cli(*args, "--jobs", "2", home=home, check=True)
    summary = json.loads(resumed.stdout)
    assert summary["chunks_reused"] == len(kept) and summary["chunks_proven"] == COARSE_CHUNKS - len(kept), summary
    assert not work.exists(), "the work folder goes once its proofs are in the bundle"
    report = json.loads(run_cli("verify", str(bundle), "--json", home=home).stdout)
    assert report["valid"] and report["facts"]["proofs_verified"] == COARSE_CHUNKS + 1, report

    spliced = tmp_path / "spliced"
    shutil.copytree(FIXTURE, spliced)
    for name in ("attestation.dsse.json", "signer.pub"):
        (spliced / name).unlink()
    member = "proofs/chunks/layer1.ffn.1.json"  # the same FFN chunk shape in both plans
    shutil.copyfile(bundle / member, spliced / member)
    manifest = json.loads((spliced / "manifest.json").read_text())
    from noseprint.core.fileio import sha256_file

    manifest["files"][member] = sha256_file(spliced / member)
    (spliced / "manifest.json").write_text(json.dumps(manifest))
    report = json.loads(run_cli("verify", str(spliced), "--json", home=fixture_home).stdout)
    assert report["failed_check"] == "commitment" and "layer1.ffn.1's proof is not about" in report["reason"], report


def test_a_work_folder_of_another_model_is_refused(tmp_path):
    home = tmp_path / "home"
    run_cli("srs", "import", str(SRS), "--logrows", LOGROWS, home=home, check=True)
    work = tmp_path / "work"
    (work / "chunks").mkdir(parents=True)
    model = save_tiny(chunky_llama(seed=2), tmp_path / "model")
    states = {
        "holds the proof of another model": {"format": "noseprint-work", "version": 1, "identity": {"w": "other"}},
        "made by another noseprint version": {"format": "noseprint-work", "version": 0, "identity": {}},
        "is unreadable": "not a state",
    }
    for message, state in states.items():
        (work / "state.json").write_text(json.dumps(state) if isinstance(state, dict) else state)
        result = run_cli(
            "prove", str(model), "--out", str(tmp_path / "b"), "--n-tokens", TOKENS, "--chunking", CHUNKING,
            "--work", str(work), home=home,
        )  # fmt: skip
        assert result.returncode == 2 and message in " ".join(result.stderr.split()), result.stderr
    bad = run_cli("prove", str(model), "--out", str(tmp_path / "c"), "--chunking", "2:16", home=home)
    assert bad.returncode == 2 and "do not split" in " ".join(bad.stderr.split()), bad.stderr
