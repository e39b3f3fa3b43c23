"""Step two of `noseprint prove`: keys, the zk-SNARK, z and its picture (and the thumbnail's proof).

z_raw is read from the proof's public output, never from the float reference, and z and the picture
are computed from it exactly as `verify` will recompute them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from circuits.build import cached_circuit
from circuits.commitment import circuit_inputs
from circuits.keys import Keys, ensure_keys
from circuits.proving import ProofArtifacts, felt_to_signed, prove, witness_outputs
from core.errors import ProvingFailed, UsageError
from core.layout import with_term_shifts
from core.statement import OWNER_LIMBS, PublicOutputs, shift_for_peak, split_outputs
from encoder import release
from encoder.generator import load_generator
from encoder.zvector import standardise_exact
from prover.plan import ProvePlan, Stopwatch
from prover.thumbnail import ThumbnailProof, prove_thumbnail

Progress = Callable[[str], None]
MAX_SHIFT_ROUNDS = 3


@dataclass(frozen=True)
class Proven:
    """The proof and what follows from its public output."""

    keys: Keys
    artifacts: ProofArtifacts
    z_raw: list[int]
    z: list[int]
    image: np.ndarray
    thumbnail: ThumbnailProof | None


def render(generator: Path, z: list[int]) -> np.ndarray:
    try:
        return load_generator(generator).render(z)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise UsageError(f"generator {generator} does not fit the generator architecture: {exc}") from None


def decode(plan: ProvePlan, values: list[int]) -> PublicOutputs:
    _, peak_scale, owner_scale = plan.circuit.output_scales
    terms = len(plan.layout.term_shifts)
    z_dim = len(values) - terms - OWNER_LIMBS
    return split_outputs(values, z_dim, terms, peak_scale, owner_scale)


def settle_shifts(plan: ProvePlan, progress: Progress) -> tuple[ProvePlan, Keys]:
    """Keys for a circuit whose term shifts are the minimal ones by the circuit's own fixed-point peaks.

    The plan's shifts come from float terms; at a power-of-two boundary the circuit's rounding can
    disagree. Then the shifts are corrected from the witness, and the circuit rebuilt (rare: new keys)."""
    for _ in range(MAX_SHIFT_ROUNDS):
        circuit = plan.circuit
        progress(f"deriving keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached after the first run)")
        keys = ensure_keys(circuit, plan.srs, need_pk=True)
        try:
            outputs = decode(plan, witness_outputs(circuit, keys, plan.srs, circuit_inputs(plan.committed, plan.owner)))
        except RuntimeError as exc:  # EZKL reports witness failures as RuntimeError
            raise ProvingFailed(
                f"EZKL could not compute this model's witness ({exc}); a value outside the circuit's range is the "
                "usual cause"
            ) from None
        shifts = list(plan.layout.term_shifts)
        wanted = [shift_for_peak(peak * float(1 << k)) for peak, k in zip(outputs.peaks, shifts, strict=True)]
        if wanted == shifts:
            return plan, keys
        progress("correcting the term shifts to the circuit's own peaks")
        layout = with_term_shifts(plan.layout, wanted)
        rebuilt = cached_circuit(layout, release.ENCODER, release.network_digest(release.ENCODER))
        plan = replace(plan, layout=layout, circuit=rebuilt)
    raise ProvingFailed("the term shifts did not settle: a term's peak sits on a power of two in fixed point")


def run_proofs(plan: ProvePlan, work: Path, progress: Progress, clock: Stopwatch) -> tuple[ProvePlan, Proven]:
    plan, keys = settle_shifts(plan, progress)
    clock.lap("keys")
    progress("proving")
    try:
        artifacts = prove(plan.circuit, keys, plan.srs, circuit_inputs(plan.committed, plan.owner), work)
    except RuntimeError as exc:  # EZKL reports witness and proving failures as RuntimeError
        raise ProvingFailed(
            f"EZKL could not prove this model ({exc}); a value outside the circuit's range is the usual cause"
        ) from None
    clock.lap("prove")
    progress("rendering fingerprint")
    outputs = decode(plan, [felt_to_signed(felt) for felt in artifacts.outputs])
    z_raw = outputs.z_raw
    z = standardise_exact(z_raw)
    image = render(plan.generator, z)
    clock.lap("render")
    thumbnail = None
    if plan.thumbnail is not None:
        thumbnail = prove_thumbnail(plan.thumbnail, z, work, progress)
        clock.lap("image_proof")
    return plan, Proven(keys, artifacts, z_raw, z, image, thumbnail)
