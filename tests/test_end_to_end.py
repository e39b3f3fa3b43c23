"""Prove and verify tiny models with real EZKL, then tamper with the bundle in every way the issue lists.

One session-scoped bundle is proven (about a minute); a second model is proven
once for the swapped-proof case. The verifier runs from its own NOSEPRINT_HOME,
holding only an imported copy of the SRS, so it derives its keys itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from noseprint.core.fileio import sha256_file
from PIL import Image

from tests.conftest import TOKENS, run_cli

pytestmark = pytest.mark.proof
ENCODE = "proofs/encode.json"


def verify(bundle: Path, home: Path, *extra: str) -> tuple[int, dict]:
    result = run_cli("verify", str(bundle), "--json", *extra, home=home)
    return result.returncode, json.loads(result.stdout)


def test_bundle_verifies_from_an_independent_verifier(proven):
    code, report = proven["first_verify"]
    assert code == 0, report
    assert report["valid"] and report["failed_check"] is None
    assert report["facts"]["vk_derived_now"] is True, "the auditor's first verify must derive its own key"
    code, again = verify(proven["bundles"][0], proven["auditor"])
    assert code == 0 and again["facts"]["vk_derived_now"] is False, "then the derived key is cached"
    manifest = json.loads((proven["bundles"][0] / "manifest.json").read_text())
    assert report["facts"]["model_commitment"] == manifest["commitment"]["digest"]
    assert len(report["facts"]["z"]) == manifest["z"]["dim"]
    assert any("committed weights" in w for w in report["warnings"])
    # The auditor derived its own key, identical to the owner's: the circuit is reproducible.
    assert report["facts"]["vk_sha256"] == manifest["circuit"]["encode_circuit"]["vk_sha256"]


def test_bundle_contents_and_opening(proven):
    bundle = proven["bundles"][0]
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest
    assert sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) < 5 * 2**20
    opening = bundle.with_name(bundle.name + ".opening.json")
    assert opening.stat().st_mode & 0o077 == 0, "the opening must be private"
    data = json.loads(opening.read_text())
    assert '"blinding":' not in json.dumps(manifest), "the blinding lines stay in the opening"
    line = json.dumps(next(iter(data["blinding"].values())))
    assert line[1:-1] not in json.dumps(manifest)
    assert data["commitment_digest"] == manifest["commitment"]["digest"]
    assert {t["name"] for t in manifest["commitment"]["tensors"]} == set(data["blinding"])
    # Two models, two commitments and two different pictures.
    other = json.loads((proven["bundles"][1] / "manifest.json").read_text())
    assert other["commitment"]["digest"] != manifest["commitment"]["digest"]
    assert other["files"]["fingerprint.png"] != manifest["files"]["fingerprint.png"]


def test_dev_srs_is_warned_about(proven):
    code, report = verify(proven["bundles"][0], proven["owner"])
    assert code == 0
    assert any("development SRS" in w for w in report["warnings"])


@pytest.fixture
def copy(proven, tmp_path):
    def make(index: int = 0) -> Path:
        target = tmp_path / f"copy{index}"
        shutil.copytree(proven["bundles"][index], target)
        return target

    return make


def rehash(bundle: Path, *names: str) -> None:
    """Update the manifest's file hashes, as a forger would, so the deeper checks are reached."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    for name in names:
        manifest["files"][name] = sha256_file(bundle / name)
    path.write_text(json.dumps(manifest))


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def assert_invalid(bundle: Path, proven, check: str, words: str, *extra: str) -> None:
    code, report = verify(bundle, proven["auditor"], *extra)
    assert code == 1, report
    assert report["valid"] is False
    assert report["failed_check"] == check, report
    assert words in report["reason"], report["reason"]


def change_pixel(bundle: Path) -> None:
    path = bundle / "fingerprint.png"
    pixels = np.array(Image.open(path).convert("RGB"))
    pixels[3, 5, 1] ^= 1
    Image.fromarray(pixels).save(path)


def test_one_pixel_changed(proven, copy):
    bundle = copy()
    change_pixel(bundle)
    assert_invalid(bundle, proven, "files", "fingerprint.png was modified")
    rehash(bundle, "fingerprint.png")
    assert_invalid(bundle, proven, "image", "not the released generator's rendering")


def test_z_edited(proven, copy):
    bundle = copy()
    z = json.loads((bundle / "z.json").read_text())
    z["z_raw"][0] += 1
    (bundle / "z.json").write_text(json.dumps(z))
    rehash(bundle, "z.json")
    assert_invalid(bundle, proven, "public output", "differs from the proof's public output")


def test_commitment_edited(proven, copy):
    from noseprint.core.fileio import canonical_json, sha256_bytes

    bundle = copy()

    def swap_points(manifest):
        tensors = manifest["commitment"]["tensors"]
        tensors[1]["points"], tensors[2]["points"] = tensors[2]["points"], tensors[1]["points"]
        manifest["commitment"]["digest"] = sha256_bytes(canonical_json(tensors))

    edit_manifest(bundle, swap_points)
    assert_invalid(bundle, proven, "commitment", "is not about its committed weights")


def test_commitment_digest_edited(proven, copy):
    bundle = copy()
    edit_manifest(bundle, lambda m: m["commitment"].update(digest="0" * 64))
    assert_invalid(bundle, proven, "commitment", "digest does not match")


def test_proof_from_another_bundle(proven, copy):
    bundle = copy()
    shutil.copyfile(proven["bundles"][1] / ENCODE, bundle / ENCODE)
    rehash(bundle, ENCODE)
    assert_invalid(bundle, proven, "public output", "differs from the proof's public output")
    # Same, with z.json taken along: the links are what catch it.
    shutil.copyfile(proven["bundles"][1] / "z.json", bundle / "z.json")
    rehash(bundle, "z.json")
    assert_invalid(bundle, proven, "commitment", "does not take in the chunks' outputs")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bit flip"])
def test_damaged_proof(proven, copy, damage):
    bundle = copy()
    path = bundle / ENCODE
    text = path.read_text()
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
        rehash(bundle, ENCODE)
        assert_invalid(bundle, proven, "proof", "not an EZKL proof")
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 10)
        rehash(bundle, ENCODE)
        assert_invalid(bundle, proven, "proof", "not an EZKL proof")
    else:
        proof = json.loads(text)
        proof["proof"][-40] ^= 0x01
        proof["hex_proof"] = None
        path.write_text(json.dumps(proof))
        rehash(bundle, ENCODE)
        assert_invalid(bundle, proven, "proof", "does not verify")


def test_verification_key_from_another_circuit(proven, copy, tmp_path):
    bundle = copy()
    other_vk = next((proven["owner"] / "keys").glob("*/vk.key"))
    own = bundle / "circuit" / "encode" / "vk.key"
    if sha256_file(other_vk) == sha256_file(own):  # pick a key of a different circuit
        others = [p for p in (proven["owner"] / "keys").glob("*/vk.key") if sha256_file(p) != sha256_file(own)]
        if not others:
            other_vk = tmp_path / "vk.key"
            other_vk.write_bytes(own.read_bytes()[:-64] + bytes(64))
        else:
            other_vk = others[0]
    shutil.copyfile(other_vk, own)
    rehash(bundle, "circuit/encode/vk.key")
    assert_invalid(bundle, proven, "keys", "not the one derived")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda m: m.pop("commitment"), "'commitment' is a required property"),
        (lambda m: m["circuit"].update(logrows="seventeen"), "is not of type 'integer'"),
        (lambda m: m["z"].update(dim=-3), "less than the minimum"),
        (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}), "does not match"),
    ],
    ids=["field removed", "wrong type", "bad value", "path traversal"],
)
def test_manifest_damaged(proven, copy, change, words):
    bundle = copy()
    edit_manifest(bundle, change)
    assert_invalid(bundle, proven, "manifest", words)


def test_manifest_not_json(proven, copy):
    bundle = copy()
    (bundle / "manifest.json").write_text("{not json")
    assert_invalid(bundle, proven, "manifest", "not valid JSON")


@pytest.mark.parametrize("name", ["z.json", "proofs/encode.json", "circuit/encode/vk.key", "manifest.json"])
def test_missing_file(proven, copy, name):
    bundle = copy()
    (bundle / name).unlink()
    check = "manifest" if name == "manifest.json" else "files"
    assert_invalid(bundle, proven, check, "missing")


def test_networks_not_released(proven, copy):
    bundle = copy()
    edit_manifest(bundle, lambda m: m["networks"]["encoder"].update(digest="ab" * 32))
    assert_invalid(bundle, proven, "networks", "encoder that is not the released one")
    bundle = copy(1)
    edit_manifest(bundle, lambda m: m["networks"]["generator"].update(digest="cd" * 32))
    assert_invalid(bundle, proven, "networks", "generator that is not the released one")


def test_srs_other_than_the_verifiers(proven, copy, tmp_path):
    stranger = tmp_path / "stranger-home"
    run_cli("srs", "init", "--logrows", str(proven["logrows"]), home=stranger, check=True)
    code, report = verify(proven["bundles"][0], stranger)
    assert code == 1 and report["failed_check"] == "srs", report
    assert "not with the SRS this verifier trusts" in report["reason"]
    # Claiming the stranger's SRS in the manifest does not help: the proof then fails against it.
    bundle = copy()
    digest = sha256_file(stranger / "srs" / f"k{proven['logrows']}.srs")
    edit_manifest(bundle, lambda m: m["srs"].update(sha256=digest))
    code, report = verify(bundle, stranger)
    assert code == 1 and report["failed_check"] in {"keys", "proof"}, report


def test_verify_usage_errors(proven, tmp_path):
    result = run_cli("verify", str(tmp_path / "nowhere"), home=proven["auditor"])
    assert result.returncode == 2 and "not found" in result.stderr
    empty_home = tmp_path / "empty-home"
    result = run_cli("verify", str(proven["bundles"][0]), home=empty_home)
    assert result.returncode == 2 and "no SRS for logrows" in result.stderr


def test_prove_refuses_existing_output(proven):
    result = run_cli(
        "prove",
        str(proven["models"][0]),
        "--out",
        str(proven["bundles"][0]),
        "--n-tokens",
        TOKENS,
        home=proven["owner"],
    )
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (proven["bundles"][0] / "manifest.json").is_file(), "nothing already written may be lost"


def test_opening_checks_the_committed_model(proven):
    bundle, opening = proven["bundles"][0], proven["root"] / "bundle0.opening.json"
    result = run_cli(
        "check-opening", str(bundle), str(proven["models"][0]), "--opening", str(opening), home=proven["auditor"]
    )
    assert result.returncode == 0 and "MATCH" in result.stdout, result.stdout + result.stderr
    other = run_cli(
        "check-opening", str(bundle), str(proven["models"][1]), "--opening", str(opening), home=proven["auditor"]
    )
    assert other.returncode == 1 and "NO MATCH" in other.stdout, other.stdout + other.stderr


def test_fast_fingerprint_agrees_with_the_proven_one(proven, tmp_path):
    from noseprint.lineage.compare import compare

    result = compare(proven["models"][0], proven["bundles"][0], image_out=tmp_path / "c.png")
    assert result["z_cosine"] > 0.99, result
    unrelated = compare(proven["models"][1], proven["bundles"][0])
    assert unrelated["z_cosine"] < result["z_cosine"]


def test_token_list_edited(proven, copy):
    bundle = copy()
    data = json.loads((bundle / "tokens.json").read_text())
    data["tokens"] = data["tokens"][:-1]
    (bundle / "tokens.json").write_text(json.dumps(data))
    rehash(bundle, "tokens.json")
    assert_invalid(bundle, proven, "tokens", "disagree on the number of tokens")


def test_own_generator_is_recorded_and_must_be_named_by_the_verifier(proven, reproven, tmp_path):
    """`reproven` was proven with an owner's own generator (and --redact and an image proof, which do not touch
    the picture; its thumbnail generator is named wherever verification gets past the networks)."""
    from noseprint.encoder.generator import GeneratorConfig, random_weights, save_generator
    from noseprint.encoder.release import GENERATOR, network_digest

    own, bundle = reproven["generator"], reproven["bundle"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["networks"]["generator"]["digest"] == network_digest(own)
    assert_invalid(bundle, proven, "networks", "name it with --generator")
    code, report = verify(bundle, proven["auditor"], "--generator", str(own), "--thumbnail", str(reproven["thumbnail"]))
    assert code == 0 and report["facts"]["generator_digest"] == network_digest(own), report
    other = tmp_path / "other" / "generator.safetensors"
    other.parent.mkdir()
    save_generator(GeneratorConfig(z_dim=128), random_weights(GeneratorConfig(z_dim=128), seed=100), other)
    code, report = verify(bundle, proven["auditor"], "--generator", str(other))
    assert code == 1 and report["failed_check"] == "networks" and "another generator" in report["reason"]
    code, report = verify(bundle, proven["auditor"], "--generator", str(GENERATOR))
    assert code == 1 and report["failed_check"] == "networks" and "not the released one" in report["reason"]
    # The picture differs from the released generator's rendering of the same model.
    assert (
        manifest["files"]["fingerprint.png"]
        != json.loads((proven["bundles"][0] / "manifest.json").read_text())["files"]["fingerprint.png"]
    )
