"""`noseprint plan`: what proving a model will cost, from its layout alone, before anything is paid for.

The chunk plan is exact (`core.chunks`: the chunks and shapes `noseprint prove` will prove), so are the
chunk circuits' rows (`circuits.chunked.probe_rows`: each shape exported and counted by EZKL, seconds,
cached) and the logrows `build_chunked` will choose from them. Seconds, key sizes and memory come from the
calibration table (`circuits.calibration`): lines fitted to chunk proofs measured on one named machine.

Scaling assumptions (each a place where the estimate can be wrong, and the first thing to check when it is):

- A proof's seconds, proving key and memory follow its circuit's area (`circuits.calibration`), on a worker
  with the calibration's cores (EZKL uses every core it is given). A node of `cores` cores runs
  `cores // calibration.cores` proofs at once (at least one), and no more than fit in `memory_gb`. With
  fewer cores than the calibration had, one proof runs at a time and takes proportionally longer (linear
  scaling: its core-seconds stay the same).
- Keys are derived once per circuit shape by the prover's main process before any chunk is proven
  (`prover.prove.prove_chunks`), and the workers read them from a shared key cache: key setup is paid once,
  not once per node, and is on the critical path. So core-hours do not depend on the number of nodes.
- Chunks are handed out in plan order to whichever worker is free first (the pool and Ray both do), every
  node alike: the wall time is that schedule's makespan, simulated.
- The encode proof (its keys, then the proof) runs on the main process after the last chunk, at the chunks'
  logrows; its rows are `circuits.budget`'s upper bound, not a count (its circuit depends on term shifts
  only known once the weights are read).
- Not counted: reading the checkpoint and committing (minutes for 7B: `bench/big_checkpoint.py`), compiling
  the circuits, the SRS, moving proofs and keys between machines, and verification.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from math import prod

from noseprint.circuits.budget import estimated_encode_rows
from noseprint.circuits.calibration import Calibration, area
from noseprint.circuits.chunked import probe_rows
from noseprint.circuits.settings import EZKL_MAX_LOGROWS, choose_logrows
from noseprint.core.chunks import Chunking, ChunkShape, distinct_shapes, hiding_logrows, plan_chunks
from noseprint.core.errors import UsageError
from noseprint.core.layout import CircuitLayout

GIB = 1 << 30
SECONDS_PER_HOUR = 3600
EXTRAPOLATION_WARNING = 4
"""Warn when a circuit's area is more than this many times the largest calibrated proof's."""

RowCounter = Callable[[ChunkShape], int]


@dataclass(frozen=True)
class CircuitCost:
    """One circuit of the plan: a chunk shape (proven `count` times) or the encode circuit (once)."""

    name: str
    count: int
    weights: int
    """Weights one proof of it takes (its weight blocks; 0 for the encode circuit)."""
    rows: int
    rows_exact: bool
    """True for EZKL's own count, False for an upper bound (the encode circuit)."""
    logrows: int
    setup_s: float
    prove_s: float
    """Per proof, on one worker of this plan's nodes."""
    pk_gb: float
    peak_gb: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Estimate:
    chunks: int
    chunking: Chunking
    logrows: int
    weights: int
    """Weights the fingerprint commits to (`noseprint prove`'s weights_committed)."""
    shapes: list[CircuitCost]
    encode: CircuitCost
    nodes: int
    cores: int
    workers_per_node: int
    core_hours: float
    """CPU time of every proof and key setup: independent of how many nodes share it."""
    wall_hours: float
    peak_gb: float
    """Memory one worker needs: its largest chunk proof's peak."""
    calibration: Calibration
    warnings: list[str]

    def to_dict(self) -> dict:
        table = self.calibration
        return {
            "chunks": self.chunks,
            "core_hours": self.core_hours,
            "wall_hours": self.wall_hours,
            "peak_gb": self.peak_gb,
            "logrows": self.logrows,
            "weights": self.weights,
            "chunking": self.chunking.to_dict(),
            "nodes": self.nodes,
            "cores": self.cores,
            "workers_per_node": self.workers_per_node,
            "shapes": [cost.to_dict() for cost in self.shapes],
            "encode": self.encode.to_dict(),
            "pk_gb": sum(cost.pk_gb for cost in [*self.shapes, self.encode]),
            "calibration": {
                "machine": table.machine,
                "measured": table.measured,
                "command": table.command,
                "cores": table.cores,
                "points": len(table.points),
            },
            "warnings": self.warnings,
        }


def shape_weights(shape: ChunkShape) -> int:
    return sum(rows * cols for _, (rows, cols), _ in shape.input_shapes())


def _cost(
    name: str, count: int, weights: int, rows: int, exact: bool, logrows: int, table: Calibration, slower: float
) -> CircuitCost:
    return CircuitCost(
        name=name,
        count=count,
        weights=weights,
        rows=rows,
        rows_exact=exact,
        logrows=logrows,
        setup_s=table.setup_seconds(rows, logrows) * slower,
        prove_s=table.prove_seconds(rows, logrows) * slower,
        pk_gb=table.pk_bytes(rows, logrows) / GIB,
        peak_gb=table.peak_bytes(rows, logrows) / GIB,
    )


def makespan(durations: list[float], workers: int) -> float:
    """Seconds until the last task ends when each task, in order, goes to the first worker free."""
    free = [0.0] * min(workers, len(durations))
    for seconds in durations:
        heapq.heapreplace(free, free[0] + seconds)
    return max(free, default=0.0)


def _workers_per_node(cores: int, peak_gb: float, memory_gb: float | None, table: Calibration) -> tuple[int, list]:
    per_node = max(1, cores // table.cores)
    if memory_gb is None:
        return per_node, []
    fitting = int(memory_gb // peak_gb) if peak_gb > 0 else per_node
    if fitting < 1:
        warning = f"one chunk proof needs about {peak_gb:.1f} GB, more than a node's {memory_gb:g} GB"
        return 1, [warning]
    return min(per_node, fitting), []


def _extrapolation_warnings(costs: list[CircuitCost], table: Calibration) -> list[str]:
    warnings = []
    for cost in costs:
        ratio = area(cost.rows, cost.logrows) / table.largest_area
        if ratio > EXTRAPOLATION_WARNING:
            warnings.append(
                f"the {cost.name} circuit is {ratio:.0f}x the largest calibrated proof, so its figures are "
                "extrapolated: calibrate at this size (bench/calibrate.py)"
            )
    return warnings


def estimate(
    layout: CircuitLayout,
    chunking: Chunking,
    nodes: int,
    cores: int,
    calibration: Calibration,
    memory_gb: float | None = None,
    rows_of: RowCounter = probe_rows,
) -> Estimate:
    """Chunks, circuits, core-hours, wall-hours and memory of proving `layout` split by `chunking` on `nodes`
    nodes of `cores` cores (and `memory_gb` each, if given), under the module's scaling assumptions.

    `rows_of` counts a chunk circuit's rows (EZKL's count by default; `circuits.budget.estimated_chunk_rows`
    bounds it without EZKL)."""
    if nodes < 1 or cores < 1:
        raise UsageError("a plan needs at least one node of at least one core")
    try:
        chunks = plan_chunks(layout, chunking)
    except ValueError as exc:
        raise UsageError(f"this chunking does not fit the model: {exc}") from None
    shapes = distinct_shapes(chunks)
    rows = [rows_of(shape) for shape in shapes]
    try:
        logrows = hiding_logrows(chunks, max(choose_logrows(r) for r in rows), EZKL_MAX_LOGROWS)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    counts = Counter(chunk.shape for chunk in chunks)
    slower = max(1.0, calibration.cores / cores)
    costs = [
        _cost(s.kind, counts[s], shape_weights(s), r, True, logrows, calibration, slower)
        for s, r in zip(shapes, rows, strict=True)
    ]
    encode_rows = estimated_encode_rows(layout, len(chunks), prod(shapes[0].output_shape))
    encode = _cost("encode", 1, 0, encode_rows, False, logrows, calibration, slower)
    peak_gb = max(cost.peak_gb for cost in costs)
    per_node, warnings = _workers_per_node(cores, peak_gb, memory_gb, calibration)
    if memory_gb is not None and encode.peak_gb > memory_gb:
        warnings.append(f"the encode proof needs about {encode.peak_gb:.1f} GB on the main node, not {memory_gb:g}")
    warnings += _extrapolation_warnings([*costs, encode], calibration)

    prove_s = {shape: cost.prove_s for shape, cost in zip(shapes, costs, strict=True)}
    chunk_wall = makespan([prove_s[chunk.shape] for chunk in chunks], nodes * per_node)
    serial = sum(cost.setup_s for cost in costs) + encode.setup_s + encode.prove_s
    busy = sum(cost.count * cost.prove_s for cost in costs) + serial
    worker_cores = min(cores, calibration.cores)
    return Estimate(
        chunks=len(chunks),
        chunking=chunking,
        logrows=logrows,
        weights=layout.weight_count,
        shapes=costs,
        encode=encode,
        nodes=nodes,
        cores=cores,
        workers_per_node=per_node,
        core_hours=busy * worker_cores / SECONDS_PER_HOUR,
        wall_hours=(serial + chunk_wall) / SECONDS_PER_HOUR,
        peak_gb=peak_gb,
        calibration=calibration,
        warnings=warnings,
    )
