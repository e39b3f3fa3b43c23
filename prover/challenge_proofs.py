"""The whole-model commitment (made by `prove`) and `noseprint prove-inference` (proofs of the committed model's
forward pass on a challenge).

At `prove` time every tensor the forward pass reads is committed (`core.whole_model`): the pieces the
fingerprint already commits are reused as they are (same integers, blinding and commitment); every other piece
gets a fresh blinding line, kept in the opening, and its KZG commitment under the bundle's logrows.

`prove-inference` then proves, for each challenge prompt: the embedding rows of its tokens (embed), every
layer (one circuit, one key, for all layers), and the output head block by block, each hidden state passing
to the next proof as a commitment; then the same prompt without each fingerprinted layer in turn (its
ablation chain: the layers after it and the head), so the verifier sees that every layer the fingerprint
reads changes the model's output; and once, the link between the fingerprint's embedding rows and the
model's. Every committed input is a piece of the whole-model commitment, so the verifier needs nothing but
the bundle and the challenge.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import noseprint.circuits.srs as srs_store
import numpy as np
from noseprint.circuits.challenge_circuits import (
    BUILDER_VERSION,
    MIN_INFERENCE_LOGROWS,
    InferenceCircuits,
    build_inference,
    commit_points,
    felts,
    model_values,
    onehot,
    piece_ints,
)
from noseprint.circuits.commitment import SCHEME, quantise, random_blinding, with_blinding
from noseprint.circuits.keys import Keys, ensure_keys
from noseprint.circuits.proving import ProofResult, ProofTask, prove_task
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.core.bundle import Bundle
from noseprint.core.challenge import Challenge, bundle_digest, challenge_errors
from noseprint.core.challenge_listing import CHALLENGE, LISTING, PROOFS, InferenceProofs, ProofEntry
from noseprint.core.chunks import Chunking
from noseprint.core.errors import ProvingFailed, UsageError
from noseprint.core.fileio import staged_directory
from noseprint.core.layout import Piece
from noseprint.core.opening import Opening
from noseprint.core.tokens import TokenList
from noseprint.core.whole_model import (
    DEFAULT_PART_WEIGHTS,
    SCALE_BITS,
    InferenceShape,
    LayerPieces,
    PartSizes,
    ablations,
    all_pieces,
    chain_prefix,
    choose_part_sizes,
    embed_block_of,
    embedding_piece,
    final_norm_piece,
    fingerprint_map,
    head_piece,
    layer_pieces,
    model_scales_piece,
    whole_layer,
    whole_model_digest,
)
from noseprint.models.checkpoint import read_config
from noseprint.models.full_model import FullModel, inference_shape, read_full_model
from noseprint.prover.resume import WorkFolder

Progress = Callable[[str], None]
WHOLE_MODEL_MAX_WEIGHTS = 100_000_000
"""The whole-model commitment reads every tensor at once in float64 (0.8 GB at this bound); bigger models get
none until it streams block by block as the fingerprint does (inference proofs are far beyond them anyway)."""


def model_weights(shape: InferenceShape) -> int:
    layer = shape.layer_shape()
    per_layer = 2 * shape.hidden + 2 * layer.q_width * shape.hidden + 2 * layer.kv_width * shape.hidden
    return 2 * shape.vocab * shape.hidden + shape.layers * (per_layer + 3 * shape.ffn * shape.hidden)


def whole_model_commitment(
    model_dir: Path,
    chunking: Chunking,
    layer_indices: list[int],
    token_ids: list[int],
    fingerprint: dict[str, np.ndarray],
    fingerprint_digest: str,
    keys: Keys,
    srs: srs_store.Srs,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, list[int]]] | None:
    """The bundle's `inference` section and its blinding lines, or None for an architecture the inference
    circuits do not implement. `fingerprint`: the fingerprint's committed pieces (integers with blinding)."""
    try:
        shape = inference_shape(read_config(Path(model_dir))).at_logrows(srs.logrows)
        shape.head_rows  # noqa: B018 (raises if one row does not fit a commitment point)
    except (UsageError, ValueError) as exc:
        progress(f"no whole-model commitment ({exc})")
        return None
    if model_weights(shape) > WHOLE_MODEL_MAX_WEIGHTS:
        progress(f"no whole-model commitment (over {WHOLE_MODEL_MAX_WEIGHTS:,} weights: read whole, not yet streamed)")
        return None
    progress("committing to the whole model")
    model = read_full_model(Path(model_dir))
    fingerprinted = fingerprint_map(layer_indices)
    values = model_values(model, fingerprinted, token_ids)
    entries, blinding = [], {}
    for piece in all_pieces(shape, chunking, fingerprinted):
        if piece.name in fingerprint:
            ours = piece_ints(values, piece)
            theirs = np.delete(fingerprint[piece.name], -1, axis=piece.blinding_axis)
            if not np.array_equal(ours, theirs):
                raise ProvingFailed(f"{piece.name}: the fingerprint and the whole model read different weights")
            continue
        line = random_blinding(piece.blinding_count)
        committed = with_blinding(piece_ints(values, piece), piece, line)
        entries.append(
            {"name": piece.name, "shape": list(piece.committed_shape), "points": commit_points(committed, keys, srs)}
        )
        blinding[piece.name] = line
    section = {
        "shape": shape.to_dict(),
        "fingerprinted_layers": list(layer_indices),
        "scale_bits": SCALE_BITS,
        "pieces": entries,
        "digest": whole_model_digest(SCHEME, fingerprint_digest, entries),
    }
    return section, blinding


# -- prove-inference ---------------------------------------------------------------------------------------


@dataclass
class Owner:
    """What only the owner has: the model's integers and every blinding line of the commitment."""

    model: FullModel
    values: dict[str, np.ndarray]
    blinding: dict[str, list[int]]
    fingerprint_rows: np.ndarray
    """The fingerprint's committed embedding piece (its tokens' rows at their own RMS, with blinding)."""

    def committed(self, piece: Piece) -> np.ndarray:
        if piece.name not in self.blinding:
            raise UsageError(f"the opening has no blinding line for {piece.name}")
        return with_blinding(piece_ints(self.values, piece), piece, self.blinding[piece.name])


def open_owner(bundle: Bundle, model_dir: Path, opening_path: Path) -> tuple[Owner, list[int]]:
    manifest = bundle.manifest
    section = manifest.inference
    if section is None:
        raise UsageError("this bundle has no whole-model commitment: prove the model again with this noseprint")
    opening = Opening.read(opening_path)
    if opening.inference_blinding is None:
        raise UsageError("the opening has no whole-model blinding; it belongs to an older bundle")
    blinding = opening.blinding | opening.inference_blinding
    token_ids = TokenList.from_json(bundle.read(manifest.tokens_file)).ids
    model = read_full_model(Path(model_dir))
    if model.shape != InferenceShape.from_dict(section["shape"]):
        raise UsageError("the model folder is not the model this bundle commits to (its shape differs)")
    fingerprinted = fingerprint_map([int(i) for i in section["fingerprinted_layers"]])
    values = model_values(model, fingerprinted, token_ids)
    rows = quantise(model.embedding[token_ids], INPUT_SCALE)
    fingerprint_rows = np.vstack([rows, np.asarray(blinding["embedding"], dtype=np.int64)[None, :]])
    return Owner(model, values, blinding, fingerprint_rows), token_ids


def proofs_per_prompt(shape: InferenceShape, fingerprinted: list[int], parts_per_layer: int) -> int:
    """Embed, every layer's parts, the head blocks, and each ablation chain's layers and head blocks."""
    chains = ablations(shape.layers, fingerprinted)
    layers = shape.layers + sum(len(after) for _, after in chains)
    return 1 + layers * parts_per_layer + (1 + len(chains)) * shape.head_blocks


def _blocks(shape: InferenceShape, tokens: list[int]) -> list[Piece]:
    return [embedding_piece(shape, embed_block_of(shape, t)[0]) for t in tokens]


def _hidden_blinding(hidden: int) -> np.ndarray:
    """A fresh random row under each hidden state, so its commitment hides it."""
    half = 1 << 15
    return np.asarray([[secrets.randbelow(2 * half) - half for _ in range(hidden)]], dtype=np.int64)


@dataclass
class Task:
    entry: ProofEntry
    circuit: str
    inputs: list[list[str]]


def _task(
    name: str, kind: str, prompt: int, index: int, circuit: str, inputs: Sequence[np.ndarray | list[str]]
) -> Task:
    encoded = [list(x) if isinstance(x, list) else felts(x) for x in inputs]
    entry = ProofEntry(name, f"{PROOFS}/{name}.json", kind, prompt, index, None, None)
    return Task(entry, circuit, encoded)


def prove_inference(
    bundle_dir: Path,
    model_dir: Path,
    opening_path: Path,
    challenge_path: Path,
    out: Path,
    force: bool = False,
    srs_file: Path | None = None,
    progress: Progress = lambda step: None,
    work_dir: Path | None = None,
    part_weights: int = DEFAULT_PART_WEIGHTS,
) -> InferenceProofs:
    """Every proof of the challenge, written to `out` (staged, moved into place whole). Each finished proof is
    kept in the work folder (default OUT.work) until then, so an interrupted run resumes where it stopped.
    `part_weights`: the most weights one layer proof takes (a bigger layer is proven in parts)."""
    bundle = Bundle.open(Path(bundle_dir))
    manifest = bundle.manifest
    digest = bundle_digest(bundle.manifest_bytes())
    challenge = Challenge.read(Path(challenge_path))
    section = manifest.inference
    if section is None:
        raise UsageError("this bundle has no whole-model commitment: prove the model again with this noseprint")
    if manifest.logrows < MIN_INFERENCE_LOGROWS:
        raise UsageError(
            f"this bundle was proven at logrows {manifest.logrows}; inference proofs need at least "
            f"{MIN_INFERENCE_LOGROWS} (prove the model again with more --n-tokens or a larger --chunk-weights)"
        )
    shape = InferenceShape.from_dict(section["shape"]).at_logrows(manifest.logrows)
    problems = challenge_errors(challenge, digest, shape.vocab)
    if problems:
        raise UsageError(f"the challenge is not for this bundle: {problems[0]}")
    progress("reading the model")
    owner, token_ids = open_owner(bundle, Path(model_dir), Path(opening_path))
    fingerprinted = fingerprint_map([int(i) for i in section["fingerprinted_layers"]])
    progress("building the inference circuits")
    sizes = _part_sizes(layer_pieces(shape, manifest.chunking, fingerprinted)[0], part_weights)
    circuits = build_inference(
        shape, manifest.chunking, fingerprinted, challenge.length, len(token_ids), manifest.logrows, sizes
    )
    srs = srs_store.choose(manifest.logrows, srs_file)
    keys = {}
    for name, circuit in circuits.all.items():
        progress(f"{name} keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached after the first run)")
        keys[name] = ensure_keys(circuit, srs, need_pk=True)
    if Path(out).exists() and not force:
        raise UsageError(f"output folder already exists: {out} (use --force to replace it)")
    work = WorkFolder(Path(work_dir or Path(out).with_name(Path(out).name + ".work")))
    identity = {"bundle": digest, "challenge": challenge.digest(), "builder": BUILDER_VERSION, "srs": srs.sha256,
                "keys": {name: k.vk_sha256 for name, k in keys.items()},
                "layer_parts": None if sizes is None else sizes.to_dict()}  # fmt: skip
    work.open(identity, {})
    results: list[ProofEntry] = []
    with staged_directory(Path(out), force) as stage:
        (stage / PROOFS).mkdir()
        run = _Runner(circuits, keys, srs, stage, results, progress, list(fingerprinted), work)
        run.total = 1 + len(challenge.prompts) * proofs_per_prompt(shape, list(fingerprinted), len(circuits.parts(0)))
        run.link(owner, token_ids)
        for prompt, tokens in enumerate(challenge.prompts):
            run.prompt(owner, prompt, tokens)
        listing = InferenceProofs(digest, challenge.digest(), challenge.length, results, sizes)
        (stage / LISTING).write_bytes(listing.to_json())
        (stage / CHALLENGE).write_bytes(challenge.to_json())
    work.remove()  # every proof is in OUT now
    return listing


def _part_sizes(layer: LayerPieces, part_weights: int) -> PartSizes | None:
    """Blocks per layer proof within `part_weights` (None: the whole layer fits one proof)."""
    if part_weights < 1:
        raise UsageError(f"--part-weights must be positive, not {part_weights}")
    sizes = choose_part_sizes(layer, part_weights)
    return None if sizes == whole_layer(layer) else sizes


class _Runner:
    """Proves tasks one after another, writing each proof and recording its commitments."""

    def __init__(
        self, circuits: InferenceCircuits, keys: dict[str, Keys], srs, stage: Path, results, progress,
        fingerprinted: list[int], work: WorkFolder,
    ):  # fmt: skip
        self.circuits, self.keys, self.srs, self.stage = circuits, keys, srs, stage
        self.results, self.progress, self.fingerprinted, self.work = results, progress, fingerprinted, work
        self.total = 0
        """How many proofs the whole challenge takes (set by the caller, for progress)."""
        self.proven_now, self.started = 0, time.monotonic()

    def _left(self) -> str:
        """Time left, from this run's proofs so far (resumed ones cost nothing)."""
        if not self.proven_now:
            return ""
        seconds = (time.monotonic() - self.started) / self.proven_now * (self.total - len(self.results))
        return f", about {seconds / 60:.0f} min left"

    def prove(self, task: Task, has_hidden_output: bool) -> ProofResult:
        circuit, keys = self.circuits.all[task.circuit], self.keys[task.circuit]
        assert keys.pk is not None
        name = task.entry.name
        if self.work.done(name):
            result = self.work.load(name)
        else:
            self.progress(f"proving {name} ({len(self.results) + 1} of {self.total}{self._left()})")
            job = ProofTask(name, str(circuit.compiled), str(circuit.settings), str(keys.vk), str(keys.pk),
                            str(self.srs.path), task.inputs)  # fmt: skip
            try:
                result = prove_task(job)
            except RuntimeError as exc:
                raise ProvingFailed(f"EZKL could not prove {name} ({exc})") from None
            self.work.record(name, result)
            self.proven_now += 1
        (self.stage / task.entry.file).write_bytes(result.proof)
        blinding = result.input_points[-1] if has_hidden_output else None
        output = result.output_points[0] if has_hidden_output else None
        entry = ProofEntry(**{**task.entry.__dict__, "blinding_points": blinding, "output_points": output})
        self.results.append(entry)
        return result

    def link(self, owner: Owner, token_ids: list[int]) -> None:
        shape = self.circuits.shape
        blocks = [owner.committed(p) for p in _blocks(shape, token_ids)]
        inputs = [owner.fingerprint_rows, onehot(shape, token_ids), *blocks, owner.committed(model_scales_piece())]
        self.prove(_task("link", "link", -1, 0, "link", inputs), has_hidden_output=False)

    def prompt(self, owner: Owner, prompt: int, tokens: list[int]) -> None:
        """The model's chain (embed, every layer, the head), then one ablation chain per fingerprinted layer."""
        shape = self.circuits.shape
        blocks = [owner.committed(p) for p in _blocks(shape, tokens)]
        embed = [onehot(shape, tokens), *blocks, _hidden_blinding(shape.hidden)]
        hidden = self.prove(_task(f"p{prompt}.embed", "embed", prompt, 0, "embed", embed), True).outputs[0]
        entering = [hidden]
        """The hidden state entering each layer (an ablation chain starts from the one entering its layer)."""
        for index in range(shape.layers):
            hidden = self.layer(owner, prompt, None, index, hidden)
            entering.append(hidden)
        self.head(owner, prompt, None, hidden)
        for without, after in ablations(shape.layers, self.fingerprinted):
            hidden = entering[without]
            for index in after:
                hidden = self.layer(owner, prompt, without, index, hidden)
            self.head(owner, prompt, without, hidden)

    def layer(self, owner: Owner, prompt: int, without: int | None, index: int, hidden: list[str]) -> list[str]:
        """The layer's proofs (`core.whole_model.layer_parts`); returns the commitment of its output. A part reads
        the layer's input h (attention) or the residual after the attention (FFN) and adds its block to the
        running residual, which starts as that same state."""
        shape = self.circuits.shape
        name = f"{chain_prefix(prompt, without)}layer{index}"
        norm_input = running = hidden
        for part in self.circuits.parts(index):
            if part.kind == "ffn" and part.block == 0:
                norm_input = running  # the FFN's norm reads the residual after the whole attention
            states = [running] if part.kind == "layer" else [norm_input, running]
            inputs: list[np.ndarray | list[str]] = [*states, *(owner.committed(p) for p in part.pieces)]
            inputs.append(_hidden_blinding(shape.hidden))
            task = _task(name + part.suffix, part.kind, prompt, index, part.kind, inputs)
            running = self.prove(task, True).outputs[0]
        return running

    def head(self, owner: Owner, prompt: int, without: int | None, hidden: list[str]) -> None:
        shape = self.circuits.shape
        norm, scales = owner.committed(final_norm_piece(shape)), owner.committed(model_scales_piece())
        for block in range(shape.head_blocks):
            head: list[np.ndarray | list[str]] = [hidden, norm, owner.committed(head_piece(shape, block)), scales]
            name = f"{chain_prefix(prompt, without)}head{block}"
            self.prove(_task(name, "head", prompt, block, "head", head), False)
