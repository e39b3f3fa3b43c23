"""`prove --prove-image`: a real EZKL proof that the thumbnail is the thumbnail generator's picture of the proven z.

CI runs it with a tiny thumbnail generator (`tests.conftest.THUMBNAIL`: 8x8, 2 channels, 71,562 rows) named by
--thumbnail on both sides; the released 16x16 one is the same code at 946k rows, measured by
`bench/image_proof.py`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from noseprint.circuits.proving import felt_to_signed
from noseprint.core.fileio import sha256_file
from noseprint.encoder.generator import read_png_pixels
from noseprint.encoder.stylegan import from_integer, pixels

from tests.conftest import THUMBNAIL, run_cli

pytestmark = pytest.mark.proof


@pytest.fixture(scope="module")
def imaged(proven, reproven):
    """The session's `reproven` bundle: proven with --prove-image and THUMBNAIL (and with --redact and an own picture
    generator, which every verify here names, so that only the image proof decides)."""
    return {
        "bundle": reproven["bundle"],
        "thumbnail": reproven["thumbnail"],
        "weights": reproven["thumbnail_weights"],
        "auditor": proven["auditor"],
        "generator": reproven["generator"],
    }


def verify(bundle: Path, imaged, *extra: str) -> tuple[int, dict]:
    result = run_cli("verify", str(bundle), "--json", "--generator", str(imaged["generator"]), *extra,
                     home=imaged["auditor"])  # fmt: skip
    return result.returncode, json.loads(result.stdout)


def test_thumbnail_proof_verifies_and_matches_the_network(imaged):
    code, report = verify(imaged["bundle"], imaged, "--thumbnail", str(imaged["thumbnail"]))
    assert code == 0, report
    assert report["facts"]["image_proven"] is True and "image proof" in report["checks_passed"]
    manifest = json.loads((imaged["bundle"] / "manifest.json").read_text())
    assert manifest["image_proof"]["num_rows"] > 10_000
    shown = read_png_pixels(imaged["bundle"] / "image" / "thumbnail.png")
    assert shown.shape == (8, 8, 3)
    # the proven picture is the thumbnail network's picture of the bundle's z, up to EZKL's fixed point
    z = json.loads((imaged["bundle"] / "z.json").read_text())["z"]
    with torch.no_grad():
        network = from_integer(THUMBNAIL, imaged["weights"])
        expected = pixels(network(torch.tensor([z], dtype=torch.float64).float() / 4096))
    gap = np.abs(expected.numpy()[0].astype(int) - shown.astype(int))
    assert gap.max() <= 4 and gap.mean() < 1.0
    # and the proof's public inputs are z itself
    instances = json.loads((imaged["bundle"] / "image" / "proof.json").read_text())["instances"]
    assert [felt_to_signed(f) for f in instances[0][: len(z)]] == z


def test_plain_bundle_says_no_image_proof(proven):
    assert proven["first_verify"][1]["facts"]["image_proven"] is False


def test_thumbnail_generator_must_be_the_trusted_one(imaged):
    code, report = verify(imaged["bundle"], imaged)
    assert code == 1 and report["failed_check"] == "image proof"
    assert "not the released one" in report["reason"]


@pytest.fixture
def forged(imaged, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(imaged["bundle"], copy)
    return copy


def rehash(bundle: Path, name: str) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][name] = sha256_file(bundle / name)
    path.write_text(json.dumps(manifest))


def expect_invalid(bundle: Path, imaged, words: str) -> None:
    code, report = verify(bundle, imaged, "--thumbnail", str(imaged["thumbnail"]))
    assert code == 1 and report["failed_check"] == "image proof", report
    assert words in report["reason"]


def test_changed_thumbnail_pixel(imaged, forged):
    from PIL import Image

    path = forged / "image" / "thumbnail.png"
    picture = read_png_pixels(path).copy()
    picture[3, 3] = 255 - picture[3, 3]
    Image.fromarray(picture).save(path)
    rehash(forged, "image/thumbnail.png")
    expect_invalid(forged, imaged, "not the picture the image proof's outputs spell")


def test_image_proof_about_another_z(imaged, forged):
    path = forged / "image" / "proof.json"
    proof = json.loads(path.read_text())
    proof["instances"][0][0] = proof["instances"][0][1]
    path.write_text(json.dumps(proof))
    rehash(forged, "image/proof.json")
    expect_invalid(forged, imaged, "another z")


def test_image_proof_with_forged_outputs_does_not_verify(imaged, forged):
    """Outputs edited to spell another thumbnail, and the thumbnail redrawn to match: only the SNARK catches it."""
    from noseprint.circuits.image_circuit import pixels_from_outputs
    from PIL import Image

    path = forged / "image" / "proof.json"
    proof = json.loads(path.read_text())
    z_dim = 128
    proof["instances"][0][z_dim] = proof["instances"][0][z_dim + 5]
    path.write_text(json.dumps(proof))
    manifest = json.loads((forged / "manifest.json").read_text())
    outputs = [felt_to_signed(f) for f in proof["instances"][0][z_dim:]]
    picture = pixels_from_outputs(outputs, manifest["image_proof"]["output_scale"], 8)
    Image.fromarray(picture).save(forged / "image" / "thumbnail.png")
    rehash(forged, "image/proof.json")
    rehash(forged, "image/thumbnail.png")
    expect_invalid(forged, imaged, "does not verify")
