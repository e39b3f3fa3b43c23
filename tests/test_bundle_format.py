"""The bundle format's one reader and writer (`core/bundle.py`), the source kinds, a version 3 bundle
verified end to end, and older versions refused with the reason (a version 2 bundle made before issue 18)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from core.bundle import MANIFEST, Bundle, BundleError, Manifest, hash_files
from core.chunks import committed_pieces, plan_chunks
from core.errors import UsageError
from core.sources import SourceKind, source_kind
from core.statement import keyid_of_limbs, owner_limbs, shift_for_peak, shift_is_minimal
from tests.conftest import run_cli

DATA = Path(__file__).with_name("data")
BUNDLE = DATA / "bundle-v4"
"""Proven with --sign (chunky llama, seed 0, 8 tokens, three chunks a term) under the development SRS beside it
(k12), by `python -m tests.make_fixture_bundle`."""
OWNER = DATA / "bundle-v4.owner.pub"
OLD_BUNDLE = DATA / "bundle-v2"
"""Proven and signed by the code before issue 18 (format version 2: no norms, not rotation-invariant)."""


def manifest_data() -> dict:
    return json.loads((BUNDLE / MANIFEST).read_text())


def test_reader_then_writer_gives_the_same_bytes_back():
    """What the prover wrote, the writer writes identically (the signature over it stays valid)."""
    raw = (BUNDLE / MANIFEST).read_bytes()
    assert Manifest.from_json(raw).to_json() == raw


def test_typed_views_of_the_manifest():
    manifest = Bundle.open(BUNDLE).manifest
    assert manifest.model_type == "llama" and manifest.token_count == 8 == manifest.layout.tokens
    chunks = plan_chunks(manifest.layout, manifest.chunking)
    assert [t.name for t in manifest.committed_tensors] == [p.name for p in committed_pieces(chunks)]
    assert [c["name"] for c in manifest.chunk_proofs] == [c.name for c in chunks] and len(chunks) == 18
    assert set(manifest.referenced_files()) <= set(manifest.files)
    assert manifest.image_proof is None and manifest.owner_keyid is not None
    assert len(Bundle.open(BUNDLE).z()) == manifest.z_dim


def test_older_versions_are_refused_with_the_reason():
    with pytest.raises(BundleError, match="version 2 bundle: its fingerprint ignores the norm weights"):
        Manifest.read(OLD_BUNDLE)
    with pytest.raises(BundleError, match="version 3 bundle: its single proof is replaced by chunk proofs"):
        Manifest.from_dict({**manifest_data(), "version": 3})
    with pytest.raises(BundleError, match="version 1 bundle: its proof binds no owner"):
        Manifest.from_dict({**manifest_data(), "version": 1})


def test_files_section_hashes_every_file(tmp_path):
    (tmp_path / "circuit").mkdir()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "circuit" / "b.bin").write_bytes(b"b")
    assert sorted(hash_files(tmp_path)) == ["a.txt", "circuit/b.bin"]


def test_owner_limbs_round_trip():
    keyid = json.loads((BUNDLE / MANIFEST).read_text())["owner"]["keyid"]
    assert keyid_of_limbs(owner_limbs(keyid)) == keyid
    assert keyid_of_limbs(owner_limbs(None)) is None
    with pytest.raises(ValueError):
        keyid_of_limbs([1 << 16] + [0] * 15)


def test_minimal_shifts():
    """The shift the prover picks is the one the verifier accepts, and no other."""
    for peak in (0.0, 0.3, 15.9, 16.0, 16.1, 1000.0, 2.0**40):
        shift = shift_for_peak(peak)
        assert shift_is_minimal(peak / 2**shift, shift)
        assert not shift_is_minimal(peak / 2 ** (shift + 1), shift + 1)
        assert shift == 0 or not shift_is_minimal(peak / 2 ** (shift - 1), shift - 1)


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda m: m.pop("commitment"), "does not follow the bundle schema"),
        (lambda m: m.pop("owner"), "does not follow the bundle schema"),
        (lambda m: m["owner"].update(keyid="not hex"), "does not follow the bundle schema"),
        (lambda m: m["circuit"]["layout"].update(tokens="eight"), "does not follow the bundle schema"),
        (lambda m: m["circuit"]["layout"]["layers"][0].update(kv_heads=4), "inconsistent"),
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
    manifest = copy.deepcopy(manifest_data())
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
    assert source_kind(BUNDLE) is SourceKind.BUNDLE
    (tmp_path / "fp").mkdir()
    (tmp_path / "fp" / "fingerprint.json").write_text("{}")
    assert source_kind(tmp_path / "fp") is SourceKind.FINGERPRINT
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert source_kind(tmp_path / "model") is SourceKind.MODEL
    with pytest.raises(UsageError, match="neither a bundle, a fingerprint folder nor a model folder"):
        source_kind(tmp_path)


@pytest.mark.proof
def test_the_committed_bundle_verifies_and_the_old_one_says_why_not(fixture_home, tmp_path):
    """Version 4 verifies with its owner's key; version 2 is INVALID with the format's reason, not a crash."""
    home = fixture_home
    result = run_cli("verify", str(BUNDLE), "--key", str(OWNER), "--json", home=home)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["valid"], report
    assert report["facts"]["signer_demanded"] and not report["facts"]["vk_derived_now"]
    assert report["facts"]["owner_keyid"] == report["facts"]["signer_keyid"]
    old = run_cli("verify", str(OLD_BUNDLE), "--json", home=home)
    assert old.returncode == 1 and "version 2 bundle" in json.loads(old.stdout)["reason"]
    tampered = tmp_path / "tampered"
    shutil.copytree(BUNDLE, tampered)
    z = json.loads((tampered / "z.json").read_text())
    z["z"][0] += 1
    (tampered / "z.json").write_text(json.dumps(z))
    result = run_cli("verify", str(tampered), "--json", home=home)
    assert result.returncode == 1 and json.loads(result.stdout)["failed_check"] == "files"


@pytest.mark.proof
def test_a_redacted_bundle_reveals_only_what_verification_needs(reproven):
    """--redact: no model type, family, depth, layer numbers or token strings; still VALID, claims empty. (The
    bundle also carries an own picture generator and an image proof, which the verifier is given: `reproven`.)"""
    bundle = reproven["bundle"]
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["model"] == {"weights_committed": manifest["model"]["weights_committed"]}
    tokens = json.loads((bundle / "tokens.json").read_text())["tokens"]
    assert all(set(token) == {"id"} for token in tokens)
    names = ["--generator", str(reproven["generator"]), "--thumbnail", str(reproven["thumbnail"])]
    result = run_cli("verify", str(bundle), "--json", *names, home=reproven["home"])
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["valid"], report
    assert "model_type" not in report["claims"] and report["claims"]["token_strings"] == [""] * 8
