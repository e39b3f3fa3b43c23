"""`prove --prove-image`: the 16x16 thumbnail of z, proven in its own circuit (`circuits/image_circuit.py`).

Planned before the fingerprint is proven, so a missing SRS or a thumbnail generator of the wrong shape
fails in seconds rather than after minutes of proving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import noseprint.circuits.srs as srs_store
import noseprint.encoder.release as release
import numpy as np
from noseprint.circuits.build import BuiltCircuit
from noseprint.circuits.image_circuit import cached_image_circuit, image_run_args_dict, output_scale, prove_image
from noseprint.circuits.keys import ensure_keys
from noseprint.circuits.srs import Srs
from noseprint.core.bundle import IMAGE_PROOF_FILE, THUMBNAIL_FILE
from noseprint.core.errors import ProvingFailed, UsageError
from noseprint.encoder.generator import load_generator

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ThumbnailPlan:
    """The thumbnail generator, its circuit and the SRS for that circuit's size."""

    path: Path
    digest: str
    resolution: int
    circuit: BuiltCircuit
    srs: Srs


@dataclass(frozen=True)
class ThumbnailProof:
    """The manifest's `image_proof` section, and the two files it names."""

    section: dict[str, Any]
    pixels: np.ndarray
    proof: Path


def plan_thumbnail(thumbnail: Path, z_dim: int, init_dev_srs: bool, progress: Progress) -> ThumbnailPlan:
    """Check the thumbnail generator, build its circuit, find the SRS for its size (the local store's)."""
    try:
        config = load_generator(thumbnail).config
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise UsageError(f"thumbnail generator {thumbnail} does not fit the generator architecture: {exc}") from None
    if config.z_dim != z_dim:
        raise UsageError(f"thumbnail generator {thumbnail} takes z of {config.z_dim}, the encoder gives {z_dim}")
    digest = release.network_digest(thumbnail)
    progress("building the image circuit")
    circuit = cached_image_circuit(thumbnail, digest)
    if init_dev_srs and srs_store.find(circuit.logrows) is None:
        progress(f"generating a development SRS for logrows {circuit.logrows} (insecure)")
    srs = srs_store.choose(circuit.logrows, make_dev=init_dev_srs)
    return ThumbnailPlan(thumbnail, digest, config.resolution, circuit, srs)


def prove_thumbnail(plan: ThumbnailPlan, z: list[int], work: Path, progress: Progress) -> ThumbnailProof:
    """Keys (cached after the first run) and a proof of the thumbnail of z."""
    circuit, srs = plan.circuit, plan.srs
    progress(f"deriving image-circuit keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached afterwards)")
    keys = ensure_keys(circuit, srs, need_pk=True)
    progress("proving the thumbnail")
    try:
        proven = prove_image(circuit, keys, srs, z, plan.resolution, work)
    except RuntimeError as exc:
        raise ProvingFailed(f"EZKL could not prove the thumbnail ({exc})") from None
    section = {
        "thumbnail_digest": plan.digest,
        "file": THUMBNAIL_FILE,
        "proof_file": IMAGE_PROOF_FILE,
        "width": plan.resolution,
        "height": plan.resolution,
        "run_args": image_run_args_dict(circuit.logrows),
        "logrows": circuit.logrows,
        "num_rows": circuit.num_rows,
        "circuit_id": circuit.circuit_id,
        "vk_sha256": keys.vk_sha256,
        "output_scale": output_scale(circuit),
        "srs_sha256": srs.sha256,
    }
    return ThumbnailProof(section, proven.pixels, proven.proof)
