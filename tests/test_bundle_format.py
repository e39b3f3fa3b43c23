"""The bundle format's one reader and writer (`core/bundle.py`), the source kinds, and a bundle made before
the layered layout, verified by today's code."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from core.bundle import MANIFEST, Bundle, BundleError, Manifest, hash_files
from core.errors import UsageError
from core.sources import SourceKind, source_kind
from tests.conftest import run_cli

DATA = Path(__file__).with_name("data")
OLD_BUNDLE = DATA / "bundle-v1"
"""Proven and signed by the code before issue 16 (tiny llama, 8 tokens, development SRS k15 beside it)."""
OLD_SRS = DATA / "dev-k15.srs"
OLD_OWNER = DATA / "bundle-v1.owner.pub"


def old_manifest() -> dict:
    return json.loads((OLD_BUNDLE / MANIFEST).read_text())


def test_reader_then_writer_gives_the_old_bytes_back():
    """What the old prover wrote, the new writer writes identically (the signature over it stays valid)."""
    raw = (OLD_BUNDLE / MANIFEST).read_bytes()
    assert Manifest.from_json(raw).to_json() == raw


def test_typed_views_of_the_old_manifest():
    manifest = Bundle.open(OLD_BUNDLE).manifest
    assert manifest.model_type == "llama" and manifest.token_count == 8 == manifest.layout.tokens
    assert [t.name for t in manifest.committed_tensors] == [p.name for p in manifest.layout.pieces()]
    assert set(manifest.referenced_files()) <= set(manifest.files)
    assert manifest.image_proof is None
    assert len(Bundle.open(OLD_BUNDLE).z()) == manifest.z_dim


def test_files_section_hashes_every_file(tmp_path):
    (tmp_path / "circuit").mkdir()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "circuit" / "b.bin").write_bytes(b"b")
    assert sorted(hash_files(tmp_path)) == ["a.txt", "circuit/b.bin"]


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda m: m.pop("commitment"), "does not follow the bundle schema"),
        (lambda m: m["circuit"]["layout"].update(tokens="eight"), "does not follow the bundle schema"),
        (lambda m: m["circuit"]["layout"]["layers"][0].update(kv_heads=3), "inconsistent"),
        (lambda m: m["circuit"]["layout"].update(term_shifts=[0]), "term shifts"),
        (lambda m: m["circuit"]["layout"]["layers"][0].update(hidden=8), "inconsistent"),
        (
            lambda m: (
                [m["circuit"]["layout"].update(hidden=8)]
                + [layer.update(hidden=8) for layer in m["circuit"]["layout"]["layers"]]
            ),
            "blinding line under 16 values",
        ),
    ],
)
def test_malformed_manifests_are_refused_with_one_exception_type(mutate, words):
    manifest = copy.deepcopy(old_manifest())
    mutate(manifest)
    with pytest.raises(BundleError, match=words):
        Manifest.from_dict(manifest)


def test_unreadable_manifests(tmp_path):
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.from_json(b"{")
    with pytest.raises(BundleError, match="not valid JSON"):
        Manifest.from_json(b"[" * 100_000)
    with pytest.raises(BundleError, match="missing"):
        Bundle.open(tmp_path)
    with pytest.raises(BundleError, match="not found"):
        Bundle.open(tmp_path / "absent")


def test_source_kinds(tmp_path):
    assert source_kind(OLD_BUNDLE) is SourceKind.BUNDLE
    (tmp_path / "fp").mkdir()
    (tmp_path / "fp" / "fingerprint.json").write_text("{}")
    assert source_kind(tmp_path / "fp") is SourceKind.FINGERPRINT
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert source_kind(tmp_path / "model") is SourceKind.MODEL
    with pytest.raises(UsageError, match="neither a bundle, a fingerprint folder nor a model folder"):
        source_kind(tmp_path)


@pytest.mark.proof
def test_a_bundle_made_before_the_layered_layout_still_verifies(tmp_path):
    """Same format version, same verdict: the refactor changed no byte of what a bundle is."""
    home = tmp_path / "auditor"
    run_cli("srs", "import", str(OLD_SRS), "--logrows", "15", home=home, check=True)
    result = run_cli("verify", str(OLD_BUNDLE), "--key", str(OLD_OWNER), "--json", home=home)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["valid"], report
    assert report["facts"]["signer_demanded"] and report["facts"]["vk_derived_now"]
    tampered = tmp_path / "tampered"
    shutil.copytree(OLD_BUNDLE, tampered)
    z = json.loads((tampered / "z.json").read_text())
    z["z"][0] += 1
    (tampered / "z.json").write_text(json.dumps(z))
    result = run_cli("verify", str(tampered), "--json", home=home)
    assert result.returncode == 1 and json.loads(result.stdout)["failed_check"] == "files"
