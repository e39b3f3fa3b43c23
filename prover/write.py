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

import noseprint.encoder.release as release
from noseprint.circuits.build import BuiltCircuit
from noseprint.circuits.commitment import SCHEME
from noseprint.circuits.keys import Keys
from noseprint.circuits.settings import INPUT_SCALE, chunk_run_args_dict, encode_run_args_dict
from noseprint.core.bundle import (
    ENCODE_CIRCUIT_FOLDER,
    ENCODE_PROOF_FILE,
    FORMAT,
    PICTURE_FILE,
    SETTINGS_NAME,
    TOKENS_FILE,
    VERSION,
    VK_NAME,
    Z_FILE,
    Manifest,
    chunk_circuit_folder,
    chunk_proof_file,
    hash_files,
)
from noseprint.core.chunks import committed_pieces
from noseprint.core.fileio import canonical_json, sha256_bytes, staged_directory
from noseprint.core.opening import Opening
from noseprint.encoder.generator import save_png
from noseprint.encoder.zvector import Z_FRAC_BITS
from noseprint.prover.challenge_proofs import whole_model_commitment
from noseprint.prover.plan import ProvePlan
from noseprint.prover.prove import Proven
from noseprint.signing.attestation import sign_bundle

Progress = Callable[[str], None]
"""The opening's blinding lines un-hide the commitment: owner-only."""


def commitment_section(plan: ProvePlan, proven: Proven) -> dict[str, Any]:
    """The model commitment: every committed piece's KZG points, from the first chunk that takes it (the
    verifier checks every other chunk that takes it carries the same), and a hash over the list."""
    points: dict[str, list[str]] = {}
    for chunk, result in zip(plan.circuits.chunks, proven.chunks, strict=True):
        for piece, piece_points in zip(chunk.pieces, result.input_points, strict=False):
            points.setdefault(piece.name, piece_points)
    tensors = [
        {"name": piece.name, "shape": list(piece.committed_shape), "points": points[piece.name]}
        for piece in committed_pieces(plan.circuits.chunks)
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


def circuit_entry(circuit: BuiltCircuit, keys: Keys, folder: str, run_args: dict[str, Any]) -> dict[str, Any]:
    return {
        "circuit_id": circuit.circuit_id,
        "num_rows": circuit.num_rows,
        "run_args": run_args,
        "settings_file": f"{folder}/{SETTINGS_NAME}",
        "vk_file": f"{folder}/{VK_NAME}",
        "vk_sha256": keys.vk_sha256,
    }


def circuit_section(plan: ProvePlan, proven: Proven) -> dict[str, Any]:
    circuits = plan.circuits
    chunk_entries = [
        circuit_entry(circuit, keys, chunk_circuit_folder(i), chunk_run_args_dict(circuits.logrows))
        | {"shape": shape.to_dict()}
        for i, (circuit, keys, shape) in enumerate(
            zip(circuits.chunk_circuits, proven.chunk_keys, circuits.shapes, strict=True)
        )
    ]
    encode_args = encode_run_args_dict(circuits.logrows, circuits.partial_scale)
    return {
        "layout": plan.layout.to_dict(),
        "chunking": plan.chunking.to_dict(),
        "logrows": circuits.logrows,
        "partial_scale": circuits.partial_scale,
        "chunk_circuits": chunk_entries,
        "encode_circuit": circuit_entry(circuits.encode, proven.encode_keys, ENCODE_CIRCUIT_FOLDER, encode_args)
        | {"output_scale": circuits.encode.output_scale},
    }


def proofs_section(plan: ProvePlan, proven: Proven) -> dict[str, Any]:
    """Each chunk proof with the commitments that are not the model's: its output blinding's and its output's
    (the link into the encode proof); the encode proof with its owner limbs' commitment."""
    chunks = [
        {
            "name": chunk.name,
            "file": chunk_proof_file(chunk.name),
            "blinding_points": result.input_points[len(chunk.pieces)],
            "output_points": result.output_points[0],
        }
        for chunk, result in zip(plan.circuits.chunks, proven.chunks, strict=True)
    ]
    encode = {"file": ENCODE_PROOF_FILE, "owner_points": proven.encode.input_points[-1]}
    return {"chunks": chunks, "encode": encode}


def build_manifest(
    plan: ProvePlan, proven: Proven, files: dict[str, str], inference: dict[str, Any] | None = None
) -> Manifest:
    model = plan.model
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
        "circuit": circuit_section(plan, proven),
        "proofs": proofs_section(plan, proven),
        "commitment": commitment_section(plan, proven),
        "z": {"file": Z_FILE, "dim": len(proven.z), "frac_bits": Z_FRAC_BITS},
        "image": {"file": PICTURE_FILE, "width": int(proven.image.shape[1]), "height": int(proven.image.shape[0])},
        "srs": {"logrows": plan.srs.logrows, "sha256": plan.srs.sha256, "origin": plan.srs.origin},
        "owner": {"keyid": plan.owner},
        "files": files,
    }
    if proven.thumbnail is not None:
        data["image_proof"] = proven.thumbnail.section
    if inference is not None:
        data["inference"] = inference
    return Manifest.from_dict(data)


def write_files(stage: Path, plan: ProvePlan, proven: Proven) -> None:
    """Every file the manifest lists, into the staging folder."""
    save_png(proven.image, stage / PICTURE_FILE)
    circuits = plan.circuits
    keyed = [(chunk_circuit_folder(i), k) for i, k in enumerate(proven.chunk_keys)]
    for folder, keys in [*keyed, (ENCODE_CIRCUIT_FOLDER, proven.encode_keys)]:
        (stage / folder).mkdir(parents=True)
        (stage / folder / SETTINGS_NAME).write_bytes(keys.settings.read_bytes())
        (stage / folder / VK_NAME).write_bytes(keys.vk.read_bytes())
    (stage / ENCODE_PROOF_FILE).parent.mkdir(parents=True)
    (stage / ENCODE_PROOF_FILE).write_bytes(proven.encode.proof)
    for chunk, result in zip(circuits.chunks, proven.chunks, strict=True):
        path = stage / chunk_proof_file(chunk.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(result.proof)
    z_record = {"z_raw": proven.z_raw, "z": proven.z, "frac_bits": Z_FRAC_BITS}
    z_record["output_scale"] = circuits.encode.output_scale
    (stage / Z_FILE).write_text(json.dumps(z_record))
    tokens = plan.model.tokens.to_json(with_strings=not plan.options.redact)
    (stage / TOKENS_FILE).write_text(json.dumps(tokens, indent=1))
    if proven.thumbnail is not None:
        section = proven.thumbnail.section
        (stage / section["file"]).parent.mkdir(parents=True, exist_ok=True)
        save_png(proven.thumbnail.pixels, stage / section["file"])
        (stage / section["proof_file"]).write_bytes(proven.thumbnail.proof.read_bytes())


def whole_model(
    plan: ProvePlan, proven: Proven, progress: Progress
) -> tuple[dict[str, Any], dict[str, list[int]]] | None:
    """The whole-model commitment (`prover.challenge_proofs`), for architectures the inference circuits implement.

    None for `--redact`: the section states the model's shape (depth, vocabulary, widths) and the fingerprinted
    layer numbers, which the inference circuits are rebuilt from and so cannot be hidden; a redacted bundle
    keeps them to itself and cannot be challenged (README, "What a bundle reveals")."""
    if plan.options.redact:
        progress("no whole-model commitment (--redact: its shape would state the depth, vocabulary and layers)")
        return None
    return whole_model_commitment(
        Path(plan.options.model_dir), plan.chunking, plan.model.layer_indices, [t.id for t in plan.model.tokens],
        plan.committed, commitment_section(plan, proven)["digest"], proven.chunk_keys[0], plan.srs, progress,
    )  # fmt: skip


def write_opening(plan: ProvePlan, commitment_digest: str, inference_blinding: dict[str, list[int]] | None) -> None:
    Opening(
        scheme=SCHEME,
        commitment_digest=commitment_digest,
        input_scale=INPUT_SCALE,
        model_dir=str(Path(plan.options.model_dir).resolve()),
        token_ids=plan.model.tokens.ids,
        term_shifts=list(plan.layout.term_shifts),
        chunking=plan.chunking.to_dict(),
        blinding=plan.blinding,
        inference_blinding=inference_blinding,
    ).write(plan.opening_path)


def write_outputs(plan: ProvePlan, proven: Proven, progress: Progress) -> Manifest:
    """The bundle, moved into place only when complete (and signed, if asked), then the opening."""
    inference = whole_model(plan, proven, progress)
    with staged_directory(plan.options.out, plan.options.force) as stage:
        write_files(stage, plan, proven)
        manifest = build_manifest(plan, proven, hash_files(stage), inference[0] if inference else None)
        manifest.write(stage)
        if plan.signer is not None:
            progress("signing")
            sign_bundle(stage, plan.signer)
    write_opening(plan, manifest.commitment_digest, inference[1] if inference else None)
    plan.work.remove()  # its chunk proofs are in the bundle, its blinding in the opening
    return manifest
