"""Step one of `noseprint prove`: check everything that can fail fast, then settle what will be proven.

Arguments, output paths, the signing key and the networks are checked before the minutes of proving;
then the checkpoint is read, the committed inputs quantised and blinded, the term shifts chosen, the
circuit built and the SRS found. Nothing here writes outside the circuit and key caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from circuits import srs as srs_store
from circuits.build import BuiltCircuit, cached_circuit
from circuits.commitment import committed_inputs
from circuits.graph import choose_term_shifts
from circuits.settings import INPUT_SCALE
from circuits.srs import Srs
from core.errors import UsageError
from core.layout import ROW, CircuitLayout, with_term_shifts
from encoder import release
from encoder.network import config_of, load_encoder
from models.invariants import invariant_terms
from models.weights import DEFAULT_TOKENS, ModelWeights, read_model
from prover.thumbnail import ThumbnailPlan, plan_thumbnail
from signing.keys import key_id, load_private, load_public

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProveOptions:
    """What the owner asked for (`noseprint prove`'s arguments)."""

    model_dir: Path
    out: Path
    opening_path: Path | None = None
    token_count: int = DEFAULT_TOKENS
    tokens_file: Path | None = None
    allow_pickle: bool = False
    force: bool = False
    srs_file: Path | None = None
    init_dev_srs: bool = False
    generator: Path | None = None
    sign_key: Path | None = None
    prove_image: bool = False
    thumbnail: Path | None = None
    owner_key: Path | None = None
    """A public key to bind without signing now (`sign` later with its private key); `sign_key` binds its own."""
    redact: bool = False
    """Leave out what verification does not need: model type, family, depth, layer numbers, token strings."""


@dataclass
class Stopwatch:
    """Seconds per step, for the summary and the benchmarks."""

    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.started
        self.started = now


@dataclass
class ProvePlan:
    """Everything the proof needs, checked and built; the blinding lines are the private opening."""

    options: ProveOptions
    opening_path: Path
    generator: Path
    signer: Ed25519PrivateKey | None
    owner: str | None
    """The key id the proof binds (`core.statement`), or None: then no registry accepts the bundle."""
    model: ModelWeights
    layout: CircuitLayout
    committed: list[np.ndarray]
    blinding: dict[str, list[int]]
    circuit: BuiltCircuit
    srs: Srs
    thumbnail: ThumbnailPlan | None


def _network_files(weights: Path, what: str) -> Path:
    if not weights.is_file() or not weights.with_suffix(".json").is_file():
        raise UsageError(f"{what} {weights} (and its .json config beside it) not found")
    return weights


def _refuse_overwrite(path: Path, what: str, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{what} already exists: {path} (use --force to replace it)")


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


def choose_srs(logrows: int, srs_file: Path | None, init_dev_srs: bool, progress: Progress) -> Srs:
    """The SRS named on the command line, else the store's (a development one made on request)."""
    if srs_file:
        return srs_store.from_file(srs_file, logrows)
    if init_dev_srs and srs_store.load(logrows) is None:
        progress(f"generating a development SRS for logrows {logrows} (insecure)")
        return srs_store.init_dev(logrows)
    return srs_store.require(logrows)


def bound_owner(signer: Ed25519PrivateKey | None, owner_key: Path | None) -> str | None:
    """The key id to bind: the signing key's, or the named public key's (they must agree if both are given)."""
    signing = key_id(signer.public_key()) if signer is not None else None
    named = key_id(load_public(owner_key)) if owner_key is not None else None
    if signing is not None and named is not None and signing != named:
        raise UsageError("--owner names another key than --sign signs with: the proof binds one owner")
    return signing or named


def plan_proof(options: ProveOptions, progress: Progress, clock: Stopwatch) -> ProvePlan:
    out = Path(options.out)
    signer = load_private(options.sign_key) if options.sign_key else None  # fail before minutes of proving
    owner = bound_owner(signer, options.owner_key)
    generator = _network_files(Path(options.generator or release.GENERATOR), "generator weights")
    opening_path = Path(options.opening_path or out.with_name(out.name + ".opening.json"))
    _refuse_overwrite(out, "output folder", options.force)
    _refuse_overwrite(opening_path, "opening file", options.force)
    thumbnail = None
    if options.prove_image:
        weights = _network_files(Path(options.thumbnail or release.THUMBNAIL), "thumbnail generator")
        z_dim = config_of(load_encoder(release.ENCODER)).z_dim
        thumbnail = plan_thumbnail(weights, z_dim, options.init_dev_srs, progress)
        clock.lap("image_circuit")
    progress("reading checkpoint")
    model = read_model(options.model_dir, options.token_count, options.tokens_file, options.allow_pickle)
    clock.lap("read")
    progress("computing invariants")
    committed, blinding = committed_inputs(model.tensors(), model.layout)
    layout = with_term_shifts(model.layout, choose_term_shifts(circuit_input_terms(model.layout, committed)))
    clock.lap("invariants_and_commit")
    progress("building circuit")
    circuit = cached_circuit(layout, release.ENCODER, release.network_digest(release.ENCODER))
    clock.lap("circuit")
    srs = choose_srs(circuit.logrows, options.srs_file, options.init_dev_srs, progress)
    clock.lap("srs")
    return ProvePlan(
        options, opening_path, generator, signer, owner, model, layout, committed, blinding, circuit, srs, thumbnail
    )
