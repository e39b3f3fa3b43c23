"""Step one of `noseprint prove`: check everything that can fail fast, then settle what will be proven.

Arguments, output paths, the signing key and the networks are checked before the minutes of proving;
then the checkpoint is read and quantised, the chunking and the term shifts chosen, the circuits built,
the SRS found, and the work folder opened (a resumed proof reads its blinding back from it, so the
commitments do not change). Nothing here writes outside the caches and the work folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import noseprint.circuits.srs as srs_store
import noseprint.encoder.release as release
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from noseprint.circuits.chunked import ChunkedCircuits, build_chunked
from noseprint.circuits.commitment import commit_pieces, output_blinding, quantised_tensors, random_blinding
from noseprint.circuits.graph import choose_term_shifts
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.circuits.srs import Srs
from noseprint.core.chunks import (
    DEFAULT_CHUNK_WEIGHTS,
    Chunking,
    choose_chunking,
    chunking_errors,
    committed_pieces,
    plan_chunks,
)
from noseprint.core.errors import UsageError
from noseprint.core.fileio import canonical_json, sha256_bytes
from noseprint.core.layout import CircuitLayout, with_term_shifts
from noseprint.core.opening import default_path as default_opening_path
from noseprint.encoder.network import config_of, load_encoder
from noseprint.models.streamed import planned_layer_terms
from noseprint.models.weights import DEFAULT_TOKENS, ModelWeights, proof_gap, read_model
from noseprint.prover.resume import WorkFolder
from noseprint.prover.schedule import Scheduler
from noseprint.prover.thumbnail import ThumbnailPlan, plan_thumbnail
from noseprint.signing.keys import key_id, load_private, load_public

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
    """Leave out what verification does not need: model type, family, depth, layer numbers, token strings; and
    with them the whole-model commitment, whose shape states them (no challenge inference for such a bundle)."""
    scheduler: Scheduler = field(default_factory=Scheduler)
    """Where chunk proofs run: this process, a local pool (--jobs), or a Ray cluster (--ray)."""
    work: Path | None = None
    """The work folder (default OUT.work): finished chunk proofs, so an interrupted prove resumes."""
    chunk_weights: int = DEFAULT_CHUNK_WEIGHTS
    chunking: Chunking | None = None
    """Explicit blocks (K/V heads, FFN rows per chunk) instead of the largest within `chunk_weights`."""


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
    chunking: Chunking
    circuits: ChunkedCircuits
    committed: dict[str, np.ndarray]
    """Each committed piece's integers with its blinding line, by name."""
    blinding: dict[str, list[int]]
    output_blinding: dict[str, list[int]]
    """Per chunk, the random rows appended to its partial term."""
    srs: Srs
    work: WorkFolder
    thumbnail: ThumbnailPlan | None


def _network_files(weights: Path, what: str) -> Path:
    if not weights.is_file() or not weights.with_suffix(".json").is_file():
        raise UsageError(f"{what} {weights} (and its .json config beside it) not found")
    return weights


def _refuse_overwrite(path: Path, what: str, force: bool) -> None:
    if path.exists() and not force:
        raise UsageError(f"{what} already exists: {path} (use --force to replace it)")


def circuit_input_terms(
    layout: CircuitLayout, quantised: dict[str, np.ndarray], chunking: Chunking | None = None
) -> np.ndarray:
    """The raw terms of the values the circuit actually receives (unit-RMS, quantised), in real units: each
    the sum over the chunk plan's blocks of the partial term its chunk proof outputs (`models.streamed`'s
    `chunk_term`, the code the streamed fingerprint sums too; default: the default chunking).

    The term shifts must bound these, not the terms of the raw weights: unit-RMS
    scaling multiplies a term by the product of its tensors' 1/rms factors.
    """
    chunking = chunking or choose_chunking(layout, DEFAULT_CHUNK_WEIGHTS)
    values = {name: q.astype(np.float64) / float(1 << INPUT_SCALE) for name, q in quantised.items()}
    terms = []
    for i, shape in enumerate(layout.layers):
        layer = {role: values[f"layer{i}.{role}"] for role, _, _ in shape.tensor_shapes()}
        terms.append(planned_layer_terms(values["embedding"], layer, shape, chunking))
    return np.concatenate(terms)


def choose_srs(logrows: int, srs_file: Path | None, init_dev_srs: bool, progress: Progress) -> Srs:
    """The SRS named on the command line, else the store's (a development one made on request)."""
    if init_dev_srs and srs_file is None and srs_store.find(logrows) is None:
        progress(f"generating a development SRS for logrows {logrows} (insecure)")
    return srs_store.choose(logrows, srs_file, make_dev=init_dev_srs)


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
    opening_path = Path(options.opening_path or default_opening_path(out))
    _refuse_overwrite(out, "output folder", options.force)
    _refuse_overwrite(opening_path, "opening file", options.force)
    thumbnail = None
    if options.prove_image:
        weights = _network_files(Path(options.thumbnail or release.THUMBNAIL), "thumbnail generator")
        z_dim = config_of(load_encoder(release.ENCODER)).z_dim
        thumbnail = plan_thumbnail(weights, z_dim, options.init_dev_srs, progress)
        clock.lap("image_circuit")
    gap = proof_gap(options.model_dir, options.allow_pickle)
    if gap is not None:
        raise UsageError(f"cannot prove {gap}")
    progress("reading checkpoint")
    model = read_model(options.model_dir, options.token_count, options.tokens_file, options.allow_pickle)
    clock.lap("read")
    progress("computing invariants")
    quantised = quantised_tensors(model.tensors(), model.layout)
    chunking = options.chunking or choose_chunking(model.layout, options.chunk_weights)
    problems = chunking_errors(model.layout, chunking)
    if problems:
        raise UsageError(f"this chunking does not fit the model: {problems[0]}")
    terms = circuit_input_terms(model.layout, quantised, chunking)
    layout = with_term_shifts(model.layout, choose_term_shifts(terms))
    clock.lap("invariants")
    progress("building circuits")
    circuits = build_chunked(layout, chunking, release.ENCODER, release.network_digest(release.ENCODER))
    clock.lap("circuit")
    srs = choose_srs(circuits.logrows, options.srs_file, options.init_dev_srs, progress)
    clock.lap("srs")
    work = WorkFolder(Path(options.work or out.with_name(out.name + ".work")))
    chunks = plan_chunks(layout, chunking)
    pieces = committed_pieces(chunks)
    fresh = {
        "blinding": {piece.name: random_blinding(piece.blinding_count) for piece in pieces},
        "output_blinding": {chunk.name: output_blinding(chunk) for chunk in chunks},
    }
    state = work.open(work_identity(model, quantised, circuits, srs), fresh)
    committed, blinding = commit_pieces(quantised, pieces, state["blinding"])
    clock.lap("commit")
    return ProvePlan(
        options, opening_path, generator, signer, owner, model, layout, chunking, circuits, committed, blinding,
        state["output_blinding"], srs, work, thumbnail,
    )  # fmt: skip


def work_identity(model: ModelWeights, quantised: dict[str, np.ndarray], circuits: ChunkedCircuits, srs: Srs) -> dict:
    """What a work folder's chunk proofs are proofs of: the committed integers, the tokens, the chunk circuits
    (their shapes, logrows and chunking) and the SRS. The encode circuit and the owner may change between runs."""
    digest = sha256_bytes(b"".join(sha256_bytes(q.tobytes()).encode() for q in quantised.values()))
    return {
        "weights": digest,
        "token_ids": [token.id for token in model.tokens],
        "chunk_circuits": [c.circuit_id for c in circuits.chunk_circuits],
        "chunks": sha256_bytes(canonical_json([chunk.name for chunk in circuits.chunks])),
        "srs": srs.sha256,
    }
