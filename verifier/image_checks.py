"""The checks of `noseprint verify` on the picture: the fingerprint image is the generator's rendering of the
proven z, and (bundles made with --prove-image) the thumbnail is the proven output of the thumbnail circuit on
the same z, that circuit, its SRS and its key being the verifier's own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import noseprint.circuits.srs as srs_store
import noseprint.encoder.release as release
from noseprint.circuits.budget import RELEASED_THUMBNAIL_ROWS, OverBudget, refuse_over_budget
from noseprint.circuits.build import BuiltCircuit
from noseprint.circuits.keys import Keys
from noseprint.core.fileio import sha256_file
from noseprint.verifier.report import CheckFailed

if TYPE_CHECKING:
    from noseprint.verifier.context import Context


def check_image(ctx: Context) -> None:
    import numpy as np
    from noseprint.encoder.generator import load_generator, read_png_pixels

    rendered = load_generator(ctx.generator).render(ctx.z)
    image_path = ctx.path(ctx.manifest.image_file)
    try:
        pixels = read_png_pixels(image_path)
    except Exception as exc:  # Pillow raises several types for corrupt images
        raise CheckFailed("image", f"fingerprint image is not a readable PNG ({exc})") from None
    if pixels.shape != rendered.shape or not np.array_equal(pixels, rendered):
        raise CheckFailed("image", "fingerprint.png is not the released generator's rendering of the proven z")
    ctx.report.facts["image_sha256"] = sha256_file(image_path)


def _derive_image_circuit(ctx: Context, logrows: int, digest: str, custom: bool) -> None:
    """The thumbnail circuit (minutes and gigabytes to build) is built only within the budget, in a worker. A
    thumbnail the auditor named is the auditor's own choice; the released one's size is known without building it."""
    from noseprint.circuits.worker import derive_in_worker, image_job, image_ready

    srs = ctx.srs if ctx.srs is not None and ctx.srs.logrows == logrows else srs_store.find(logrows)
    if srs is None or image_ready(ctx.thumbnail, digest, srs):
        return  # no SRS of that size: the SRS check below says so
    try:
        if not custom:
            refuse_over_budget(RELEASED_THUMBNAIL_ROWS, "the image proof's circuit", ctx.budget)
        derive_in_worker(image_job(ctx.thumbnail, digest, srs), ctx.budget, "the image proof's circuit")
    except OverBudget as exc:
        raise CheckFailed("image proof", str(exc)) from None


def _image_proof_keys(ctx: Context, declared: dict[str, Any]) -> tuple[BuiltCircuit, srs_store.Srs, Keys]:
    """The thumbnail circuit, SRS and verification key, derived here; the manifest's claims must match each.

    Nothing of these is taken from the bundle: a prover that picked its own circuit or key could prove anything.
    """
    from noseprint.circuits.image_circuit import cached_image_circuit, image_run_args_dict, output_scale
    from noseprint.circuits.keys import ensure_keys

    custom = ctx.thumbnail != release.THUMBNAIL
    trusted = release.network_digest(ctx.thumbnail) if custom else release.RELEASED_THUMBNAIL_DIGEST
    if declared["thumbnail_digest"] != trusted:
        which = "the one given by --thumbnail" if custom else "the released one"
        raise CheckFailed("image proof", f"the image proof is about a thumbnail generator that is not {which}")
    _derive_image_circuit(ctx, declared["logrows"], trusted, custom)
    circuit = cached_image_circuit(ctx.thumbnail, trusted)
    if declared["logrows"] != circuit.logrows or declared["run_args"] != image_run_args_dict(circuit.logrows):
        raise CheckFailed("image proof", "the image circuit's settings are not the ones noseprint derives")
    if declared["circuit_id"] != circuit.circuit_id or declared["output_scale"] != output_scale(circuit):
        raise CheckFailed("image proof", "the image circuit id is not the one derived from the thumbnail generator")
    srs = ctx.srs if ctx.srs is not None and ctx.srs.logrows == circuit.logrows else srs_store.choose(circuit.logrows)
    if declared["srs_sha256"] != srs.sha256:
        raise CheckFailed("image proof", "the image proof was made with another SRS than the one this verifier trusts")
    keys = ensure_keys(circuit, srs, need_pk=False)
    if declared["vk_sha256"] != keys.vk_sha256:
        raise CheckFailed("image proof", "the image proof's verification key is not the one derived here")
    return circuit, srs, keys


def _check_image_proof_pixels(ctx: Context, declared: dict[str, Any], circuit: BuiltCircuit, proof_path: Path) -> None:
    """The proof's public values: its inputs are the proven z, its outputs spell exactly the thumbnail shown."""
    from noseprint.circuits.image_circuit import output_scale, pixels_from_outputs, split_instances
    from noseprint.encoder.generator import load_generator, read_png_pixels

    resolution = load_generator(ctx.thumbnail).config.resolution
    try:
        inputs, outputs = split_instances(proof_path, len(ctx.z))
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckFailed("image proof", f"the image proof is not readable ({exc})") from None
    if inputs != list(ctx.z):
        raise CheckFailed("image proof", "the image proof is about another z than the fingerprint proof")
    if len(outputs) != 3 * resolution * resolution:
        raise CheckFailed(
            "image proof", f"the image proof has {len(outputs)} outputs, not a {resolution}x{resolution} picture"
        )
    try:
        shown = read_png_pixels(ctx.path(declared["file"]))
    except Exception as exc:  # Pillow raises several types for corrupt images
        raise CheckFailed("image proof", f"the thumbnail is not a readable PNG ({exc})") from None
    proven = pixels_from_outputs(outputs, output_scale(circuit), resolution)
    if shown.shape != proven.shape or not (shown == proven).all():
        raise CheckFailed("image proof", "the thumbnail is not the picture the image proof's outputs spell")


def check_image_proof(ctx: Context) -> None:
    """Only for bundles made with --prove-image: the thumbnail is the proven output of the thumbnail circuit
    on the same z. Circuit, SRS and key are the verifier's own, as for the fingerprint proof."""
    declared = ctx.manifest.image_proof
    ctx.report.facts["image_proven"] = declared is not None
    if declared is None:
        return
    from noseprint.circuits.proving import verify_proof

    circuit, srs, keys = _image_proof_keys(ctx, declared)
    proof_path = ctx.path(declared["proof_file"])
    _check_image_proof_pixels(ctx, declared, circuit, proof_path)
    if not verify_proof(proof_path, keys, srs):
        raise CheckFailed("image proof", "the image proof does not verify against the derived verification key")
    ctx.report.facts["image_proof"] = {
        "rows": circuit.num_rows,
        "logrows": circuit.logrows,
        "vk_sha256": keys.vk_sha256,
    }
