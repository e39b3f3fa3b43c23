"""The bundle format's one reader and writer (`core/bundle.py`), the source kinds, a version 3 bundle
verified end to end, and older versions refused with the reason (a version 2 bundle made before issue 18)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from noseprint.core.bundle import MANIFEST, Bundle, BundleError, Manifest, hash_files
from noseprint.core.chunks import committed_pieces, plan_chunks
from noseprint.core.errors import UsageError
from noseprint.core.sources import SourceKind, source_kind
from noseprint.core.statement import keyid_of_limbs, owner_limbs, shift_for_peak, shift_is_minimal

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
    assert "inference" not in manifest  # its shape would state the depth, vocabulary and layer numbers
    tokens = json.loads((bundle / "tokens.json").read_text())["tokens"]
    assert all(set(token) == {"id"} for token in tokens)
    names = ["--generator", str(reproven["generator"]), "--thumbnail", str(reproven["thumbnail"])]
    result = run_cli("verify", str(bundle), "--json", *names, home=reproven["home"])
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["valid"], report
    assert "model_type" not in report["claims"] and report["claims"]["token_strings"] == [""] * 8


def test_a_redacted_bundle_gets_no_whole_model_section(monkeypatch):
    """Issue 33 (6): the whole-model section states the model's shape (depth, vocabulary, widths) and the
    fingerprinted layer numbers, all of which `--redact` hides, and inference circuits are rebuilt from them, so
    they cannot be redacted there: a redacted bundle is written without the section (and so without challenge
    inference). The commitment itself is stood in for (real proving: the `reproven` proof test above)."""
    import types

    import noseprint.prover.write as write

    stated = {"shape": {"vocab": 63, "layers": 2}, "fingerprinted_layers": [0, 1]}
    monkeypatch.setattr(write, "whole_model_commitment", lambda *args: (stated, {}))
    monkeypatch.setattr(write, "commitment_section", lambda plan, proven: {"digest": "ab" * 32})
    proven = types.SimpleNamespace(chunk_keys=[None])
    steps: list[str] = []

    def plan(redact: bool) -> types.SimpleNamespace:
        options = types.SimpleNamespace(redact=redact, model_dir="model")
        model = types.SimpleNamespace(layer_indices=[0, 1], tokens=[])
        return types.SimpleNamespace(options=options, model=model, chunking=None, committed={}, srs=None)

    assert write.whole_model(plan(False), proven, steps.append) == (stated, {})
    assert write.whole_model(plan(True), proven, steps.append) is None
    assert any("--redact" in step for step in steps)


def test_an_unsigned_bundles_owner_key_is_shown_as_bound_but_unsigned(capsys):
    """Issue 33 (7): the proof binds the owner key the manifest names, but an unsigned bundle's prover chose it
    freely (anyone can bind anyone's key id), so it is reported apart from the facts, as bound but unsigned; a
    signed bundle's key (the signature checked against it) stays a fact."""
    import types

    from noseprint.core.statement import PublicOutputs
    from noseprint.verifier.context import Context
    from noseprint.verifier.proof_checks import _check_statement
    from noseprint.verifier.report import Report

    from noseprint.verify_cli import print_report

    keyid = "ab" * 32

    def checked(signed: bool) -> Report:
        report = Report(facts={"signed": signed} | ({"signer_keyid": keyid} if signed else {}))
        ctx = Context(Path("bundle"), None, report)
        ctx.manifest_ = types.SimpleNamespace(owner_keyid=keyid, layout=types.SimpleNamespace(term_shifts=[]))
        _check_statement(ctx, PublicOutputs([], [], keyid))
        return report

    unsigned = checked(False)
    assert "owner_keyid" not in unsigned.facts and unsigned.facts["owner_keyid_unsigned"] == keyid
    assert checked(True).facts["owner_keyid"] == keyid
    print_report(unsigned, as_json=False)
    shown = " ".join(capsys.readouterr().out.split())
    assert f"owner_keyid: {keyid} (bound by the proof but unsigned" in shown and "not signed" in shown


def test_each_chunks_commitment_points_are_counted_by_its_own_key(monkeypatch):
    """Issue 33 (7, latent): EZKL lays a committed input out by the circuit that commits it, so the points a
    chunk's weights and output have follow that chunk's key's usable rows, not the encode key's. Two chunk keys
    and the encode key with different column heights: the counts by each chunk's own key pass, a count that
    follows the encode key does not. (The keys, proofs and their links are stood in for.)"""
    import types

    import noseprint.circuits.proving as proving
    import noseprint.verifier.proof_checks as checks
    from noseprint.circuits.commitment import SCHEME
    from noseprint.circuits.settings import INPUT_SCALE
    from noseprint.core.bundle import chunk_proof_file
    from noseprint.core.fileio import canonical_json, sha256_bytes
    from noseprint.verifier.context import Context
    from noseprint.verifier.report import CheckFailed, Report

    usable = {"chunk-key-0": 100, "chunk-key-1": 60, "encode-key": 7}
    monkeypatch.setattr(proving, "usable_commit_rows", lambda keys, srs: usable[keys])
    monkeypatch.setattr(checks, "_proof_json", lambda *args: {})
    monkeypatch.setattr(checks, "_commitments_match", lambda *args: True)
    shapes = [types.SimpleNamespace(output_shape=(1, 250)), types.SimpleNamespace(output_shape=(2, 125))]
    pieces = [
        types.SimpleNamespace(name="a", committed_shape=(1, 150)),
        types.SimpleNamespace(name="b", committed_shape=(2, 60)),
    ]
    chunks = [
        types.SimpleNamespace(index=i, name=f"layer0.qk.{i}", shape=shapes[i], pieces=(piece,))
        for i, piece in enumerate(pieces)
    ]

    def verified(points_a: int) -> Report:
        tensors = [
            {"name": "a", "shape": [1, 150], "points": ["p"] * points_a},  # 150 // 100 + 1 by chunk 0's key
            {"name": "b", "shape": [2, 60], "points": ["p"] * 3},  # 120 // 60 + 1 by chunk 1's key
        ]
        commitment = {"scheme": SCHEME, "input_scale": INPUT_SCALE, "tensors": tensors}
        commitment["digest"] = sha256_bytes(canonical_json(tensors))
        listed = [
            {"name": c.name, "file": chunk_proof_file(c.name), "blinding_points": ["b"], "output_points": ["o"] * n}
            for c, n in zip(chunks, (3, 5), strict=True)  # 250 // 100 + 1 and 250 // 60 + 1
        ]
        ctx = Context(Path("bundle"), None, Report())
        ctx.manifest_ = types.SimpleNamespace(
            data={"commitment": commitment}, chunk_proofs=listed, commitment_digest=commitment["digest"],
            encode_proof={"file": "proofs/encode.json", "owner_points": ["w"]},
        )  # fmt: skip
        ctx.srs, ctx.keys, ctx.chunk_keys = "srs", "encode-key", ["chunk-key-0", "chunk-key-1"]
        ctx.circuits = types.SimpleNamespace(chunks=chunks, shapes=shapes)
        checks.check_commitment(ctx)
        return ctx.report

    assert verified(2).facts["model_commitment"]
    with pytest.raises(CheckFailed, match="a has 22 commitment points, not 2"):
        verified(150 // 7 + 1)  # as many as the encode key's column height would give
