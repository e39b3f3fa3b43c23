"""`noseprint prove`: from a checkpoint folder to a bundle and a private opening.

Steps, each timed for the benchmark:
  read      last two layers + selected embedding rows, lazily
  invariants  float reference terms (for the term shifts; never leave this machine)
  commit    quantise, blind
  circuit   export ONNX, EZKL settings, compile (public facts only)
  keys      EZKL setup, or the cached keys
  prove     witness + proof; z_raw is the proof's public output
  render    z from z_raw (exact integers), picture from z (released generator)
  image_proof  with --prove-image: the 16x16 thumbnail of z, proven (circuits.image_circuit)
  bundle    manifest + files, written atomically
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import noseprint
from circuits import srs as srs_store
from circuits.build import cached_circuit
from circuits.graph import choose_term_shifts
from circuits.image_circuit import cached_image_circuit, image_run_args_dict, output_scale, prove_image
from circuits.keys import ensure_keys
from circuits.layout import ROW, CircuitLayout, with_term_shifts
from circuits.proving import felt_to_signed, prove
from circuits.settings import INPUT_SCALE, run_args_dict
from encoder import release
from encoder.generator import load_generator, save_png
from encoder.zvector import Z_FRAC_BITS, standardise_exact
from noseprint.errors import ProvingFailed, UsageError
from noseprint.fileio import canonical_json, sha256_bytes, sha256_file, staged_directory, write_json_atomic
from noseprint.manifest import FORMAT, MANIFEST, VERSION
from prover.architectures import Adapter, adapter_for, check_layer
from prover.checkpoint import Checkpoint, open_checkpoint
from prover.commitment import SCHEME, as_circuit_floats, quantise, random_blinding, with_blinding
from prover.invariants import invariant_terms
from prover.tokens import Token, load_tokenizer, read_token_file, select_tokens, tokens_to_json
from signing.attestation import sign_bundle
from signing.keys import load_private

DEFAULT_TOKENS = 16
FINGERPRINTED_LAYERS = 2


@dataclass
class ProveResult:
    bundle: Path
    opening: Path
    manifest: dict
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelWeights:
    """What the fingerprint reads from a checkpoint, and nothing else."""

    model_type: str
    family: str
    layer_count: int
    layer_indices: list[int]
    tokens: list[Token]
    embedding: np.ndarray
    layers: list[dict[str, np.ndarray]]
    layout: CircuitLayout


@dataclass
class OpenModel:
    """A checkpoint opened for fingerprinting: everything but the layer tensors, which are read on demand."""

    checkpoint: Checkpoint
    adapter: Adapter
    model_type: str
    layer_count: int
    layer_indices: list[int]
    tokens: list[Token]
    embedding: np.ndarray
    layout: CircuitLayout

    def load_layer(self, position: int) -> dict[str, np.ndarray]:
        """The tensors of the `position`-th fingerprinted layer, shape-checked against config.json."""
        index = self.layer_indices[position]
        weights = self.adapter.load_layer(self.checkpoint, index)
        check_layer(weights, self.layout.layers[position], index)
        return weights


def open_model(model_dir: Path, token_count: int, tokens_file: Path | None, allow_pickle: bool) -> OpenModel:
    checkpoint = open_checkpoint(model_dir, allow_pickle=allow_pickle)
    adapter = adapter_for(checkpoint.config)
    shape = adapter.layer_shape(checkpoint.config)
    layer_count = adapter.layer_count(checkpoint.config)
    if layer_count < FINGERPRINTED_LAYERS:
        raise UsageError(f"the model has {layer_count} layer(s); the fingerprint needs {FINGERPRINTED_LAYERS}")
    if tokens_file is not None:
        tokens = read_token_file(tokens_file, token_count)
    else:
        tokens = select_tokens(load_tokenizer(model_dir), token_count)
    embedding = adapter.read_embedding(checkpoint, [t.id for t in tokens])
    if embedding.shape[1] != shape.hidden:
        raise UsageError(f"embedding width {embedding.shape[1]} differs from hidden size {shape.hidden}")
    indices = list(range(layer_count - FINGERPRINTED_LAYERS, layer_count))
    layout = CircuitLayout(tokens=len(tokens), hidden=shape.hidden, layers=(shape,) * FINGERPRINTED_LAYERS)
    model_type = str(checkpoint.config.get("model_type"))
    return OpenModel(checkpoint, adapter, model_type, layer_count, indices, tokens, embedding, layout)


def read_model(model_dir: Path, token_count: int, tokens_file: Path | None, allow_pickle: bool) -> ModelWeights:
    """Everything the proof commits to, in memory (fine at provable sizes; `open_model` streams)."""
    opened = open_model(model_dir, token_count, tokens_file, allow_pickle)
    layers = [opened.load_layer(position) for position in range(len(opened.layer_indices))]
    return ModelWeights(
        opened.model_type,
        opened.adapter.family,
        opened.layer_count,
        opened.layer_indices,
        opened.tokens,
        opened.embedding,
        layers,
        opened.layout,
    )


def committed_inputs(
    model: ModelWeights, layout: CircuitLayout, blinding: dict[str, list[int]] | None = None
) -> tuple[list[np.ndarray], dict[str, list[int]]]:
    """Quantised, blinded tensors in circuit order, and the blinding lines (the opening).

    Fresh blinding is drawn unless `blinding` is given (re-opening a commitment).
    """
    arrays = {"embedding": model.embedding}
    for index, weights in enumerate(model.layers):
        arrays.update({f"layer{index}.{role}": value for role, value in weights.items()})
    committed, opening = [], {}
    for piece in layout.pieces():
        if piece.name not in arrays or (blinding is not None and piece.name not in blinding):
            raise UsageError(f"no tensor {piece.name} to commit to")
        if tuple(arrays[piece.name].shape) != piece.shape:
            raise UsageError(f"tensor {piece.name} has shape {arrays[piece.name].shape}, the layout says {piece.shape}")
        line = blinding[piece.name] if blinding is not None else random_blinding(piece.blinding_count)
        committed.append(with_blinding(quantise(arrays[piece.name], INPUT_SCALE), piece, line))
        opening[piece.name] = line
    return committed, opening


def circuit_input_terms(layout: CircuitLayout, committed: list[np.ndarray]) -> np.ndarray:
    """The raw terms of the values the circuit actually receives (unit-RMS, quantised), in real units.

    The term shifts must bound these, not the terms of the raw weights: unit-RMS
    scaling multiplies a term by the product of its tensors' 1/rms factors.
    """
    values = {}
    for piece, tensor in zip(layout.pieces(), committed, strict=True):
        core = tensor[:-1] if piece.blinding_axis == ROW else tensor[:, :-1]
        values[piece.name] = core.astype(np.float64) / float(1 << INPUT_SCALE)
    layers = [
        {role: values[f"layer{i}.{role}"] for role, _, _ in shape.tensor_shapes()}
        for i, shape in enumerate(layout.layers)
    ]
    return invariant_terms(values["embedding"], layers, list(layout.layers))


def prove_model(
    model_dir: Path,
    out: Path,
    *,
    opening_path: Path | None = None,
    token_count: int = DEFAULT_TOKENS,
    tokens_file: Path | None = None,
    allow_pickle: bool = False,
    force: bool = False,
    srs_file: Path | None = None,
    init_dev_srs: bool = False,
    generator: Path | None = None,
    sign_key: Path | None = None,
    prove_image_too: bool = False,
    thumbnail: Path | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> ProveResult:
    out = Path(out)
    signer = load_private(sign_key) if sign_key else None  # fail before minutes of proving, not after
    generator_path = Path(generator) if generator else release.GENERATOR
    if not generator_path.is_file() or not generator_path.with_suffix(".json").is_file():
        raise UsageError(f"generator weights {generator_path} (and its .json config beside it) not found")
    thumbnail_path = Path(thumbnail) if thumbnail else release.THUMBNAIL
    if prove_image_too and not (thumbnail_path.is_file() and thumbnail_path.with_suffix(".json").is_file()):
        raise UsageError(f"thumbnail generator {thumbnail_path} (and its .json config beside it) not found")
    opening_path = Path(opening_path) if opening_path else out.with_name(out.name + ".opening.json")
    if out.exists() and not force:
        raise UsageError(f"output folder already exists: {out} (use --force to replace it)")
    if opening_path.exists() and not force:
        raise UsageError(f"opening file already exists: {opening_path} (use --force to replace it)")
    timings: dict[str, float] = {}

    def step(name: str, started: float) -> float:
        now = time.perf_counter()
        timings[name] = now - started
        return now

    t = time.perf_counter()
    thumbnail_plan = None
    if prove_image_too:
        thumbnail_plan = plan_thumbnail(thumbnail_path, z_dim_of_encoder(), init_dev_srs, progress)
        t = step("image_circuit", t)
    progress("reading checkpoint")
    model = read_model(model_dir, token_count, tokens_file, allow_pickle)
    t = step("read", t)
    progress("computing invariants")
    committed, blinding = committed_inputs(model, model.layout)
    terms = circuit_input_terms(model.layout, committed)
    layout = with_term_shifts(model.layout, choose_term_shifts(terms))
    t = step("invariants_and_commit", t)

    with tempfile.TemporaryDirectory(prefix="noseprint-prove-") as tmp:
        work = Path(tmp)
        progress("building circuit")
        circuit = cached_circuit(layout, release.ENCODER, release.network_digest(release.ENCODER))
        t = step("circuit", t)
        if srs_file:
            srs = srs_store.from_file(srs_file, circuit.logrows)
        elif init_dev_srs and srs_store.load(circuit.logrows) is None:
            progress(f"generating a development SRS for logrows {circuit.logrows} (insecure)")
            srs = srs_store.init_dev(circuit.logrows)
        else:
            srs = srs_store.require(circuit.logrows)
        t = step("srs", t)
        progress(f"deriving keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached after the first run)")
        keys = ensure_keys(circuit, srs, need_pk=True)
        t = step("keys", t)
        progress("proving")
        try:
            artifacts = prove(circuit, keys, srs, [as_circuit_floats(c, INPUT_SCALE) for c in committed], work)
        except RuntimeError as exc:  # EZKL reports witness and proving failures as RuntimeError
            raise ProvingFailed(
                f"EZKL could not prove this model ({exc}); a value outside the circuit's range is the usual cause"
            ) from None
        t = step("prove", t)

        progress("rendering fingerprint")
        z_raw = [felt_to_signed(felt) for felt in artifacts.outputs]
        z = standardise_exact(z_raw)
        try:
            image = load_generator(generator_path).render(z)
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise UsageError(f"generator {generator_path} does not fit the generator architecture: {exc}") from None
        t = step("render", t)

        image_proof = None
        if prove_image_too:
            image_proof = prove_thumbnail(thumbnail_plan, z, work, progress)
            t = step("image_proof", t)

        tensors = [
            {"name": piece.name, "shape": list(piece.committed_shape), "points": points}
            for piece, points in zip(layout.pieces(), artifacts.commitments, strict=True)
        ]
        commitment_digest = sha256_bytes(canonical_json(tensors))
        with staged_directory(out, force) as stage:
            (stage / "circuit").mkdir()
            save_png(image, stage / "fingerprint.png")
            (stage / "proof.json").write_bytes(artifacts.proof.read_bytes())
            (stage / "circuit" / "settings.json").write_bytes(keys.settings.read_bytes())
            (stage / "circuit" / "vk.key").write_bytes(keys.vk.read_bytes())
            (stage / "z.json").write_text(
                json.dumps({"z_raw": z_raw, "z": z, "frac_bits": Z_FRAC_BITS, "output_scale": circuit.output_scale})
            )
            (stage / "tokens.json").write_text(json.dumps(tokens_to_json(model.tokens), indent=1))
            if image_proof is not None:
                (stage / "image").mkdir()
                save_png(image_proof.pop("pixels"), stage / image_proof["file"])
                (stage / image_proof["proof_file"]).write_bytes(image_proof.pop("proof").read_bytes())
            files = {str(p.relative_to(stage)): sha256_file(p) for p in sorted(stage.rglob("*")) if p.is_file()}
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "tool": {"noseprint": noseprint.__version__, "ezkl": ezkl_version()},
                "model": {
                    "model_type": model.model_type,
                    "family": model.family,
                    "layer_count": model.layer_count,
                    "fingerprinted_layers": model.layer_indices,
                    "weights_committed": layout.weight_count,
                },
                "tokens": {"file": "tokens.json", "count": len(model.tokens)},
                "networks": {
                    "encoder": {"digest": release.network_digest(release.ENCODER)},
                    "generator": {"digest": release.network_digest(generator_path)},
                },
                "circuit": {
                    "layout": layout.to_dict(),
                    "run_args": run_args_dict(circuit.logrows),
                    "logrows": circuit.logrows,
                    "num_rows": circuit.num_rows,
                    "circuit_id": circuit.circuit_id,
                    "settings_file": "circuit/settings.json",
                    "vk_file": "circuit/vk.key",
                    "vk_sha256": keys.vk_sha256,
                    "output_scale": circuit.output_scale,
                },
                "proof": {"file": "proof.json"},
                "commitment": {
                    "scheme": SCHEME,
                    "input_scale": INPUT_SCALE,
                    "tensors": tensors,
                    "digest": commitment_digest,
                },
                "z": {"file": "z.json", "dim": len(z), "frac_bits": Z_FRAC_BITS},
                "image": {"file": "fingerprint.png", "width": int(image.shape[1]), "height": int(image.shape[0])},
                "srs": {"logrows": srs.logrows, "sha256": srs.sha256, "origin": srs.origin},
                "files": files,
            }
            if image_proof is not None:
                manifest["image_proof"] = image_proof
            (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if signer is not None:
                progress("signing")
                sign_bundle(stage, signer)
        write_json_atomic(
            opening_path,
            {
                "scheme": SCHEME,
                "commitment_digest": commitment_digest,
                "input_scale": INPUT_SCALE,
                "model_dir": str(Path(model_dir).resolve()),
                "token_ids": [tok.id for tok in model.tokens],
                "term_shifts": list(layout.term_shifts),
                "blinding": blinding,
            },
            mode=0o600,
        )
    step("bundle", t)
    return ProveResult(out, opening_path, manifest, timings)


@dataclass
class ThumbnailPlan:
    """What --prove-image needs, settled before the fingerprint is proven (a missing SRS fails in seconds)."""

    path: Path
    digest: str
    resolution: int
    circuit: object
    srs: object


def plan_thumbnail(thumbnail: Path, z_dim: int, init_dev_srs: bool, progress) -> ThumbnailPlan:
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
    if init_dev_srs and srs_store.load(circuit.logrows) is None:
        progress(f"generating a development SRS for logrows {circuit.logrows} (insecure)")
        srs = srs_store.init_dev(circuit.logrows)
    else:
        srs = srs_store.require(circuit.logrows)
    return ThumbnailPlan(thumbnail, digest, config.resolution, circuit, srs)


def prove_thumbnail(plan: ThumbnailPlan, z: list[int], work: Path, progress) -> dict:
    """The --prove-image step: keys and a proof of the 16x16 picture of z.

    Returns the manifest's `image_proof` section plus the proof file and the pixels to write."""
    circuit, srs = plan.circuit, plan.srs
    progress(f"deriving image-circuit keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached afterwards)")
    keys = ensure_keys(circuit, srs, need_pk=True)
    progress("proving the thumbnail")
    try:
        proven = prove_image(circuit, keys, srs, z, plan.resolution, work)
    except RuntimeError as exc:
        raise ProvingFailed(f"EZKL could not prove the thumbnail ({exc})") from None
    return {
        "thumbnail_digest": plan.digest,
        "file": "image/thumbnail.png",
        "proof_file": "image/proof.json",
        "width": plan.resolution,
        "height": plan.resolution,
        "run_args": image_run_args_dict(circuit.logrows),
        "logrows": circuit.logrows,
        "num_rows": circuit.num_rows,
        "circuit_id": circuit.circuit_id,
        "vk_sha256": keys.vk_sha256,
        "output_scale": output_scale(circuit),
        "srs_sha256": srs.sha256,
        "pixels": proven.pixels,
        "proof": proven.proof,
    }


def z_dim_of_encoder() -> int:
    from encoder.network import load_encoder

    return int(load_encoder(release.ENCODER).config.z_dim)


def ezkl_version() -> str:
    import ezkl

    return str(getattr(ezkl, "__version__", "unknown"))
