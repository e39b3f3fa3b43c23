"""Step two of `noseprint prove`: the chunk proofs, the encode proof, z and its picture (and the thumbnail's).

Chunk proofs run where the scheduler says (this process, a local pool, a Ray cluster); each finished one is
kept in the work folder, so a re-run proves only what is missing. The encode proof takes the chunks' outputs
in with the same commitments. z_raw is read from the encode proof's public output, never from the float
reference, and z and the picture are computed from it exactly as `verify` will recompute them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
from noseprint.circuits.build import BuiltCircuit
from noseprint.circuits.chunked import build_chunked
from noseprint.circuits.commitment import chunk_inputs, encode_inputs
from noseprint.circuits.keys import Keys, ensure_keys
from noseprint.circuits.proving import ProofResult, ProofTask, felt_to_signed, prove_task, witness_of
from noseprint.core.chunks import Chunk
from noseprint.core.errors import ProvingFailed, UsageError
from noseprint.core.layout import with_term_shifts
from noseprint.core.statement import OWNER_LIMBS, PublicOutputs, shift_for_peak, split_outputs
from noseprint.encoder.generator import load_generator
from noseprint.encoder.zvector import standardise_exact
from noseprint.prover.plan import ProvePlan, Stopwatch
from noseprint.prover.schedule import run_tasks
from noseprint.prover.thumbnail import ThumbnailProof, prove_thumbnail

Progress = Callable[[str], None]
MAX_SHIFT_ROUNDS = 3


@dataclass(frozen=True)
class Proven:
    """Every proof and what follows from the encode proof's public output."""

    chunk_keys: list[Keys]
    """One per chunk shape, in `plan.circuits.shapes` order."""
    encode_keys: Keys
    chunks: list[ProofResult]
    """One per chunk, in chunk order."""
    encode: ProofResult
    z_raw: list[int]
    z: list[int]
    image: np.ndarray
    thumbnail: ThumbnailProof | None
    reused: int = 0
    """Chunk proofs found in the work folder (a resumed prove), not proven by this run."""


def render(generator: Path, z: list[int]) -> np.ndarray:
    try:
        return load_generator(generator).render(z)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise UsageError(f"generator {generator} does not fit the generator architecture: {exc}") from None


def decode(plan: ProvePlan, values: list[int]) -> PublicOutputs:
    _, peak_scale, owner_scale = plan.circuits.encode.output_scales
    terms = len(plan.layout.term_shifts)
    z_dim = len(values) - terms - OWNER_LIMBS
    return split_outputs(values, z_dim, terms, peak_scale, owner_scale)


def task_for(name: str, circuit: BuiltCircuit, keys: Keys, plan: ProvePlan, inputs: list) -> ProofTask:
    assert keys.pk is not None
    return ProofTask(
        name, str(circuit.compiled), str(circuit.settings), str(keys.vk), str(keys.pk), str(plan.srs.path), inputs
    )


class ChunkTasks(Sequence[tuple[str, ProofTask]]):
    """The missing chunks' tasks, made only when the scheduler takes them: a task carries its chunk's weights,
    and all of a big model's at once would not fit in memory."""

    def __init__(self, plan: ProvePlan, keys: list[Keys], chunks: list[Chunk]):
        self.plan, self.keys, self.chunks = plan, keys, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        chunk = self.chunks[index]
        circuits = self.plan.circuits
        keys = self.keys[circuits.shapes.index(chunk.shape)]
        inputs = chunk_inputs(chunk, self.plan.committed, self.plan.output_blinding[chunk.name])
        return chunk.name, task_for(chunk.name, circuits.circuit_of(chunk), keys, self.plan, inputs)


def prove_chunks(plan: ProvePlan, progress: Progress) -> tuple[list[Keys], list[ProofResult], int]:
    """Every chunk proof, from the work folder where it is already done, else proven now and saved there."""
    circuits = plan.circuits
    keys = []
    for index, circuit in enumerate(circuits.chunk_circuits):
        progress(
            f"chunk keys {index + 1}/{len(circuits.chunk_circuits)} ({circuit.num_rows:,} rows, logrows "
            f"{circuit.logrows}; cached after the first run)"
        )
        keys.append(ensure_keys(circuit, plan.srs, need_pk=True))
    missing = [chunk for chunk in circuits.chunks if not plan.work.done(chunk.name)]
    done = len(circuits.chunks) - len(missing)
    progress(f"proving {len(missing)} chunks ({done} already in {plan.work.root})")
    try:
        run_tasks(ChunkTasks(plan, keys, missing), prove_task, plan.work.record, plan.options.scheduler)
    except RuntimeError as exc:  # EZKL reports witness and proving failures as RuntimeError
        raise ProvingFailed(f"EZKL could not prove a chunk ({exc}); the finished ones are kept") from None
    return keys, [plan.work.load(chunk.name) for chunk in circuits.chunks], done


def settle_shifts(plan: ProvePlan, partials: list[list[str]], progress: Progress) -> tuple[ProvePlan, Keys]:
    """Keys for an encode circuit whose term shifts are the minimal ones by the circuit's own fixed-point peaks.

    The plan's shifts come from float terms; at a power-of-two boundary the circuit's rounding can
    disagree. Then the shifts are corrected from the witness, and the encode circuit rebuilt (rare: new keys;
    the chunk proofs do not depend on the shifts)."""
    for _ in range(MAX_SHIFT_ROUNDS):
        circuit = plan.circuits.encode
        progress(f"encode keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached after the first run)")
        keys = ensure_keys(circuit, plan.srs, need_pk=True)
        task = task_for("encode", circuit, keys, plan, encode_inputs(partials, plan.owner))
        try:
            witness = witness_of(task)
        except RuntimeError as exc:
            raise ProvingFailed(
                f"EZKL could not compute this model's witness ({exc}); a value outside the circuit's range is the "
                "usual cause"
            ) from None
        outputs = decode(plan, [felt_to_signed(felt) for column in witness["outputs"] for felt in column])
        shifts = list(plan.layout.term_shifts)
        wanted = [shift_for_peak(peak * float(1 << k)) for peak, k in zip(outputs.peaks, shifts, strict=True)]
        if wanted == shifts:
            return plan, keys
        progress("correcting the term shifts to the circuit's own peaks")
        layout = with_term_shifts(plan.layout, wanted)
        rebuilt = build_chunked(layout, plan.chunking, release.ENCODER, release.network_digest(release.ENCODER))
        if rebuilt.logrows != plan.circuits.logrows:
            raise ProvingFailed("the encode circuit changed size with its term shifts")
        plan = replace(plan, layout=layout, circuits=rebuilt)
    raise ProvingFailed("the term shifts did not settle: a term's peak sits on a power of two in fixed point")


def run_proofs(plan: ProvePlan, work: Path, progress: Progress, clock: Stopwatch) -> tuple[ProvePlan, Proven]:
    chunk_keys, chunks, reused = prove_chunks(plan, progress)
    clock.lap("chunks")
    partials = [result.outputs[0] for result in chunks]
    plan, encode_keys = settle_shifts(plan, partials, progress)
    clock.lap("encode_keys")
    progress("proving the encoder")
    try:
        encode = prove_task(
            task_for("encode", plan.circuits.encode, encode_keys, plan, encode_inputs(partials, plan.owner))
        )
    except RuntimeError as exc:
        raise ProvingFailed(f"EZKL could not prove the encoder ({exc})") from None
    clock.lap("encode")
    progress("rendering fingerprint")
    instances = json.loads(encode.proof)["instances"][0]
    outputs = decode(plan, [felt_to_signed(felt) for felt in instances])
    z = standardise_exact(outputs.z_raw)
    image = render(plan.generator, z)
    clock.lap("render")
    thumbnail = None
    if plan.thumbnail is not None:
        thumbnail = prove_thumbnail(plan.thumbnail, z, work, progress)
        clock.lap("image_proof")
    return plan, Proven(chunk_keys, encode_keys, chunks, encode, outputs.z_raw, z, image, thumbnail, reused)
