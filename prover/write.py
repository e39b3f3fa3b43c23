"""Step three of `noseprint prove`: the bundle folder (staged, moved into place whole) and the opening.

The manifest is built here from the plan and the proof, and validated by the bundle format's own
reader (`core.bundle.Manifest.from_dict`) before anything is moved into place: the prover cannot write
a bundle the verifier would refuse to read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from circuits.commitment import SCHEME
from circuits.settings import INPUT_SCALE, run_args_dict
from core.bundle import (
    FORMAT,
    PICTURE_FILE,
    PROOF_FILE,
    SETTINGS_FILE,
    TOKENS_FILE,
    VERSION,
    VK_FILE,
    Z_FILE,
    Manifest,
    hash_files,
)
from core.fileio import canonical_json, sha256_bytes, staged_directory, write_json_atomic
from encoder import release
from encoder.generator import save_png
from encoder.zvector import Z_FRAC_BITS
from models.tokens import tokens_to_json
from prover.plan import ProvePlan
from prover.prove import Proven
from signing.attestation import sign_bundle

Progress = Callable[[str], None]
OPENING_MODE = 0o600
"""The opening's blinding lines un-hide the commitment: owner-only."""


def commitment_section(plan: ProvePlan, proven: Proven) -> dict[str, Any]:
    """The model commitment: the committed weight tensors' KZG points. The owner limbs, the circuit's last
    input, are committed too but are no part of it: they are public, bound through the outputs."""
    pieces = plan.layout.pieces()
    weights = proven.artifacts.commitments[: len(pieces)]
    tensors = [
        {"name": piece.name, "shape": list(piece.committed_shape), "points": points}
        for piece, points in zip(pieces, weights, strict=True)
    ]
    return {
        "scheme": SCHEME,
        "input_scale": INPUT_SCALE,
        "tensors": tensors,
        "digest": sha256_bytes(canonical_json(tensors)),
    }


def model_section(plan: ProvePlan) -> dict[str, Any]:
    """What the owner states about the model. Nothing here is proven; `--redact` leaves the claims out
    (README, "What a bundle reveals")."""
    model = plan.model
    section: dict[str, Any] = {"weights_committed": plan.layout.weight_count}
    if not plan.options.redact:
        section |= {
            "model_type": model.model_type,
            "family": model.family,
            "layer_count": model.layer_count,
            "fingerprinted_layers": model.layer_indices,
        }
    return section


def build_manifest(plan: ProvePlan, proven: Proven, files: dict[str, str]) -> Manifest:
    model, circuit, layout = plan.model, plan.circuit, plan.layout
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"noseprint": version("noseprint"), "ezkl": version("ezkl")},
        "model": model_section(plan),
        "tokens": {"file": TOKENS_FILE, "count": len(model.tokens)},
        "networks": {
            "encoder": {"digest": release.network_digest(release.ENCODER)},
            "generator": {"digest": release.network_digest(plan.generator)},
        },
        "circuit": {
            "layout": layout.to_dict(),
            "run_args": run_args_dict(circuit.logrows),
            "logrows": circuit.logrows,
            "num_rows": circuit.num_rows,
            "circuit_id": circuit.circuit_id,
            "settings_file": SETTINGS_FILE,
            "vk_file": VK_FILE,
            "vk_sha256": proven.keys.vk_sha256,
            "output_scale": circuit.output_scale,
        },
        "proof": {"file": PROOF_FILE},
        "commitment": commitment_section(plan, proven),
        "z": {"file": Z_FILE, "dim": len(proven.z), "frac_bits": Z_FRAC_BITS},
        "image": {"file": PICTURE_FILE, "width": int(proven.image.shape[1]), "height": int(proven.image.shape[0])},
        "srs": {"logrows": plan.srs.logrows, "sha256": plan.srs.sha256, "origin": plan.srs.origin},
        "owner": {"keyid": plan.owner},
        "files": files,
    }
    if proven.thumbnail is not None:
        data["image_proof"] = proven.thumbnail.section
    return Manifest.from_dict(data)


def write_files(stage: Path, plan: ProvePlan, proven: Proven) -> None:
    """Every file the manifest lists, into the staging folder."""
    (stage / SETTINGS_FILE).parent.mkdir(parents=True)
    save_png(proven.image, stage / PICTURE_FILE)
    (stage / PROOF_FILE).write_bytes(proven.artifacts.proof.read_bytes())
    (stage / SETTINGS_FILE).write_bytes(proven.keys.settings.read_bytes())
    (stage / VK_FILE).write_bytes(proven.keys.vk.read_bytes())
    z_record = {"z_raw": proven.z_raw, "z": proven.z, "frac_bits": Z_FRAC_BITS}
    z_record["output_scale"] = plan.circuit.output_scale
    (stage / Z_FILE).write_text(json.dumps(z_record))
    tokens = tokens_to_json(plan.model.tokens, with_strings=not plan.options.redact)
    (stage / TOKENS_FILE).write_text(json.dumps(tokens, indent=1))
    if proven.thumbnail is not None:
        section = proven.thumbnail.section
        (stage / section["file"]).parent.mkdir(parents=True, exist_ok=True)
        save_png(proven.thumbnail.pixels, stage / section["file"])
        (stage / section["proof_file"]).write_bytes(proven.thumbnail.proof.read_bytes())


def write_opening(plan: ProvePlan, commitment_digest: str) -> None:
    opening = {
        "scheme": SCHEME,
        "commitment_digest": commitment_digest,
        "input_scale": INPUT_SCALE,
        "model_dir": str(Path(plan.options.model_dir).resolve()),
        "token_ids": [token.id for token in plan.model.tokens],
        "term_shifts": list(plan.layout.term_shifts),
        "blinding": plan.blinding,
    }
    write_json_atomic(plan.opening_path, opening, mode=OPENING_MODE)


def write_outputs(plan: ProvePlan, proven: Proven, progress: Progress) -> Manifest:
    """The bundle, moved into place only when complete (and signed, if asked), then the opening."""
    with staged_directory(plan.options.out, plan.options.force) as stage:
        write_files(stage, plan, proven)
        manifest = build_manifest(plan, proven, hash_files(stage))
        manifest.write(stage)
        if plan.signer is not None:
            progress("signing")
            sign_bundle(stage, plan.signer)
    write_opening(plan, manifest.commitment_digest)
    return manifest
