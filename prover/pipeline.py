"""`noseprint prove`: from a checkpoint folder to a bundle and a private opening, in three steps.

  plan   (prover/plan.py)   check arguments, read the checkpoint, commit, choose shifts, build the circuit, find the SRS
  prove  (prover/prove.py)  keys, the proof, z and its picture; with --prove-image the thumbnail's proof
  write  (prover/write.py)  the bundle (staged, moved into place whole, signed on request) and the opening

Each step is timed for the summary and the benchmarks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from noseprint.core.bundle import Manifest
from noseprint.prover.plan import ProveOptions, Stopwatch, plan_proof
from noseprint.prover.prove import run_proofs
from noseprint.prover.write import write_outputs


@dataclass
class ProveResult:
    bundle: Path
    opening: Path
    manifest: Manifest
    timings: dict[str, float] = field(default_factory=dict)
    chunks_reused: int = 0
    """Chunk proofs taken from the work folder of an interrupted run."""


def prove_model(options: ProveOptions, progress: Callable[[str], None] = lambda step: None) -> ProveResult:
    clock = Stopwatch()
    plan = plan_proof(options, progress, clock)
    with tempfile.TemporaryDirectory(prefix="noseprint-prove-") as tmp:
        plan, proven = run_proofs(plan, Path(tmp), progress, clock)
        manifest = write_outputs(plan, proven, progress)
    clock.lap("bundle")
    return ProveResult(Path(options.out), plan.opening_path, manifest, clock.timings, proven.reused)
