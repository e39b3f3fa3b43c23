"""Step two of `noseprint prove`: keys, the zk-SNARK, z and its picture (and the thumbnail's proof).

z_raw is read from the proof's public output, never from the float reference, and z and the picture
are computed from it exactly as `verify` will recompute them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from circuits.commitment import as_circuit_floats
from circuits.keys import Keys, ensure_keys
from circuits.proving import ProofArtifacts, felt_to_signed, prove
from circuits.settings import INPUT_SCALE
from core.errors import ProvingFailed, UsageError
from encoder.generator import load_generator
from encoder.zvector import standardise_exact
from prover.plan import ProvePlan, Stopwatch
from prover.thumbnail import ThumbnailProof, prove_thumbnail

Progress = Callable[[str], None]


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


def run_proofs(plan: ProvePlan, work: Path, progress: Progress, clock: Stopwatch) -> Proven:
    circuit = plan.circuit
    progress(f"deriving keys ({circuit.num_rows:,} rows, logrows {circuit.logrows}; cached after the first run)")
    keys = ensure_keys(circuit, plan.srs, need_pk=True)
    clock.lap("keys")
    progress("proving")
    inputs = [as_circuit_floats(c, INPUT_SCALE) for c in plan.committed]
    try:
        artifacts = prove(circuit, keys, plan.srs, inputs, work)
    except RuntimeError as exc:  # EZKL reports witness and proving failures as RuntimeError
        raise ProvingFailed(
            f"EZKL could not prove this model ({exc}); a value outside the circuit's range is the usual cause"
        ) from None
    clock.lap("prove")
    progress("rendering fingerprint")
    z_raw = [felt_to_signed(felt) for felt in artifacts.outputs]
    z = standardise_exact(z_raw)
    image = render(plan.generator, z)
    clock.lap("render")
    thumbnail = None
    if plan.thumbnail is not None:
        thumbnail = prove_thumbnail(plan.thumbnail, z, work, progress)
        clock.lap("image_proof")
    return Proven(keys, artifacts, z_raw, z, image, thumbnail)
