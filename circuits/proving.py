"""Witness generation, proving, and the checks on a proof that need EZKL."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from noseprint.circuits.keys import Keys
from noseprint.circuits.srs import Srs
from noseprint.core.layout import MAX_UNUSABLE_ROWS, point_count


def felt_to_signed(felt: str) -> int:
    """A field element as the signed integer EZKL quantised (values above p/2 are negative)."""
    import ezkl

    return int(ezkl.felt_to_int(felt))


ZERO_FELT = "0" * 64
USABLE_ROWS_FILE = "usable_rows.json"


def _points_for(size: int, keys: Keys, srs: Srs) -> int:
    import ezkl

    return len(ezkl.kzg_commit([ZERO_FELT] * size, str(keys.vk), str(keys.settings), str(srs.path)))


def usable_commit_rows(keys: Keys, srs: Srs) -> int:
    """Rows of one committed column that carry values: EZKL commits an input of `size` values as
    `size // usable + 1` points (src/circuit/modules/polycommit.rs). Found once per key by asking EZKL to
    commit to zero vectors around 2^logrows (about six commitments), then cached beside the key."""
    cached = keys.vk.parent / USABLE_ROWS_FILE
    if cached.is_file():
        return int(json.loads(cached.read_text())["usable_rows"])
    logrows = int(json.loads(keys.settings.read_text())["run_args"]["logrows"])
    low, high = (1 << logrows) - MAX_UNUSABLE_ROWS, 1 << logrows  # one point at `low`, two at `high`
    if _points_for(low, keys, srs) != 1 or _points_for(high, keys, srs) != 2:
        raise RuntimeError("EZKL's commitment layout is not the one noseprint knows")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _points_for(middle, keys, srs) == 1 else (low, middle)
    cached.write_text(json.dumps({"usable_rows": high}))
    return high


def points_per_input(size: int, usable_rows: int) -> int:
    """How many KZG points EZKL's polycommit gives an input of `size` values."""
    return point_count(size, usable_rows)


def verify_proof(proof_path: Path, keys: Keys, srs: Srs) -> bool:
    import ezkl

    try:
        return bool(ezkl.verify(str(proof_path), str(keys.settings), str(keys.vk), str(srs.path), False))
    except BaseException as exc:  # EZKL raises errors, or pyo3 panics (BaseException), for malformed proofs
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False


@dataclass(frozen=True)
class ProofTask:
    """One proof to make, anywhere: paths a worker can read (the caches, on a shared folder for a cluster)
    and the circuit's input data. Picklable, so it travels to a process pool or a Ray worker."""

    name: str
    compiled: str
    settings: str
    vk: str
    pk: str
    srs: str
    inputs: list


@dataclass(frozen=True)
class ProofResult:
    """What a proof task returns: the proof file's bytes and what its witness says."""

    proof: bytes
    outputs: list[list[str]]
    """The circuit's outputs as EZKL field elements (a chunk's partial term, for the encode circuit)."""
    input_points: list[list[str]]
    output_points: list[list[str]]


def prove_task(task: ProofTask) -> ProofResult:
    """Witness and proof for one task, in a scratch folder of the worker."""
    import ezkl

    with tempfile.TemporaryDirectory(prefix="noseprint-task-") as tmp:
        data, witness_path, proof_path = Path(tmp) / "input.json", Path(tmp) / "witness.json", Path(tmp) / "proof.json"
        data.write_text(json.dumps({"input_data": task.inputs}))
        ezkl.gen_witness(str(data), task.compiled, str(witness_path), task.vk, task.srs)
        ezkl.prove(str(witness_path), task.compiled, task.pk, str(proof_path), task.srs)
        witness = json.loads(witness_path.read_text())
        outputs = witness.get("processed_outputs") or {}
        return ProofResult(
            proof=proof_path.read_bytes(),
            outputs=[list(column) for column in witness["outputs"]],
            input_points=list(witness["processed_inputs"]["polycommit"]),
            output_points=list(outputs.get("polycommit") or []),
        )


def witness_of(task: ProofTask) -> dict:
    """The witness alone (no proof): outputs and commitments, in seconds."""
    import ezkl

    with tempfile.TemporaryDirectory(prefix="noseprint-witness-") as tmp:
        data, witness_path = Path(tmp) / "input.json", Path(tmp) / "witness.json"
        data.write_text(json.dumps({"input_data": task.inputs}))
        ezkl.gen_witness(str(data), task.compiled, str(witness_path), task.vk, task.srs)
        return dict(json.loads(witness_path.read_text()))


def commitments_match(proof_path: Path, inputs: list[list[str]], outputs: list[list[str]]) -> bool:
    """True iff writing these input and output commitments over the proof's own changes nothing.

    The caller checks the counts first (one list per committed input and output, each with the points
    EZKL gives a value of its size): `swap_proof_commitments` writes over the first commitments only."""
    import ezkl

    with tempfile.TemporaryDirectory(prefix="noseprint-swap-") as tmp:
        copy, witness = Path(tmp) / "proof.json", Path(tmp) / "witness.json"
        shutil.copyfile(proof_path, copy)
        witness.write_text(
            json.dumps(
                {
                    "inputs": [],
                    "pretty_elements": None,
                    "outputs": [],
                    "processed_inputs": {"poseidon_hash": None, "polycommit": inputs},
                    "processed_params": None,
                    "processed_outputs": {"poseidon_hash": None, "polycommit": outputs} if outputs else None,
                    "max_lookup_inputs": 0,
                    "min_lookup_inputs": 0,
                    "max_range_size": 0,
                    "version": ezkl.__version__ if hasattr(ezkl, "__version__") else None,
                }
            )
        )
        ezkl.swap_proof_commitments(str(copy), str(witness))
        return json.loads(copy.read_text())["proof"] == json.loads(Path(proof_path).read_text())["proof"]


PARALLEL_VERIFY_FROM = 16
"""Below this many proofs, starting worker processes costs more than verifying one after another."""


def _verify_job(job: tuple[str, str, str, str, str]) -> tuple[str, bool]:
    import ezkl

    name, proof, settings, vk, srs = job
    try:
        return name, bool(ezkl.verify(proof, settings, vk, srs, False))
    except BaseException as exc:  # EZKL raises errors, or pyo3 panics (BaseException), for malformed proofs
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return name, False


def verify_many(jobs: list[tuple[str, Path, Keys]], srs: Srs) -> str | None:
    """Verify every (name, proof, keys); the name of the first (in order) that fails, or None.

    Many proofs are verified in parallel, one process per core ("spawn": EZKL is not fork-safe)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    plain = [(name, str(path), str(keys.settings), str(keys.vk), str(srs.path)) for name, path, keys in jobs]
    if len(plain) < PARALLEL_VERIFY_FROM:
        results = dict(_verify_job(job) for job in plain)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=context) as pool:
            results = dict(pool.map(_verify_job, plain, chunksize=max(1, len(plain) // (4 * (os.cpu_count() or 1)))))
    return next((name for name, *_ in plain if not results[name]), None)
