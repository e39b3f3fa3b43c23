"""Witness generation, proving, and the checks on a proof that need EZKL."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from circuits.build import BuiltCircuit
from circuits.keys import Keys
from circuits.srs import Srs


@dataclass(frozen=True)
class ProofArtifacts:
    proof: Path
    commitments: list[list[str]]
    """Per committed tensor, EZKL's KZG commitment(s) as compressed-point hex strings."""
    outputs: list[str]
    """The public output (z_raw) as field-element hex strings, as they appear in the proof."""


def felt_to_signed(felt: str) -> int:
    """A field element as the signed integer EZKL quantised (values above p/2 are negative)."""
    import ezkl

    return int(ezkl.felt_to_int(felt))


def _witness(circuit: BuiltCircuit, keys: Keys, srs: Srs, inputs: list[list[float]], workdir: Path) -> Path:
    import ezkl

    data_path, witness_path = workdir / "input.json", workdir / "witness.json"
    data_path.write_text(json.dumps({"input_data": inputs}))
    ezkl.gen_witness(str(data_path), str(circuit.compiled), str(witness_path), str(keys.vk), str(srs.path))
    return witness_path


def witness_outputs(circuit: BuiltCircuit, keys: Keys, srs: Srs, inputs: list[list[float]]) -> list[int]:
    """The public outputs the proof would carry, as signed integers, from the witness alone (no proof)."""
    with tempfile.TemporaryDirectory(prefix="noseprint-witness-") as tmp:
        witness = json.loads(_witness(circuit, keys, srs, inputs, Path(tmp)).read_text())
    return [felt_to_signed(felt) for column in witness["outputs"] for felt in column]


def commitments_of(circuit: BuiltCircuit, keys: Keys, srs: Srs, inputs: list[list[float]]) -> list[list[str]]:
    """The KZG commitments of the committed inputs, without proving: the witness carries them.

    This is how an opening is checked: the same integers under the same key and SRS give the same points."""
    with tempfile.TemporaryDirectory(prefix="noseprint-commit-") as tmp:
        witness = json.loads(_witness(circuit, keys, srs, inputs, Path(tmp)).read_text())
    return list(witness["processed_inputs"]["polycommit"])


def prove(circuit: BuiltCircuit, keys: Keys, srs: Srs, inputs: list[list[float]], workdir: Path) -> ProofArtifacts:
    import ezkl

    if keys.pk is None:
        raise ValueError("proving needs the proving key")
    proof_path = workdir / "proof.json"
    witness_path = _witness(circuit, keys, srs, inputs, workdir)
    ezkl.prove(str(witness_path), str(circuit.compiled), str(keys.pk), str(proof_path), str(srs.path))
    witness = json.loads(witness_path.read_text())
    proof = json.loads(proof_path.read_text())
    return ProofArtifacts(
        proof=proof_path,
        commitments=witness["processed_inputs"]["polycommit"],
        outputs=list(proof["instances"][0]),
    )


def commitments_in_proof(proof_path: Path, commitments: list[list[str]], points_expected: list[int]) -> bool:
    """True iff the proof's committed input columns are exactly `commitments`.

    Exact, not prefix: EZKL's `swap_proof_commitments` writes the given commitments over the first ones
    in the proof, so a short list (or points moved between inputs) would leave the proof unchanged too.
    Hence the counts first: one list per committed input, each with the points EZKL gives an input of its
    size (`points_per_input`); then, if writing them over the proof's own changes nothing, they are its own.
    """
    import ezkl

    if [len(points) for points in commitments] != points_expected:
        return False

    with tempfile.TemporaryDirectory(prefix="noseprint-swap-") as tmp:
        copy, witness = Path(tmp) / "proof.json", Path(tmp) / "witness.json"
        shutil.copyfile(proof_path, copy)
        witness.write_text(
            json.dumps(
                {
                    "inputs": [],
                    "pretty_elements": None,
                    "outputs": [],
                    "processed_inputs": {"poseidon_hash": None, "polycommit": commitments},
                    "processed_params": None,
                    "processed_outputs": None,
                    "max_lookup_inputs": 0,
                    "min_lookup_inputs": 0,
                    "max_range_size": 0,
                    "version": ezkl.__version__ if hasattr(ezkl, "__version__") else None,
                }
            )
        )
        ezkl.swap_proof_commitments(str(copy), str(witness))
        return json.loads(copy.read_text())["proof"] == json.loads(Path(proof_path).read_text())["proof"]


MAX_UNUSABLE_ROWS = 64
"""halo2 keeps blinding factors + 1 rows of every column unusable; a handful for these circuits, never this many."""
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
    return size // usable_rows + 1


def verify_proof(proof_path: Path, keys: Keys, srs: Srs) -> bool:
    import ezkl

    try:
        return bool(ezkl.verify(str(proof_path), str(keys.settings), str(keys.vk), str(srs.path), False))
    except BaseException as exc:  # EZKL raises errors, or pyo3 panics (BaseException), for malformed proofs
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return False
