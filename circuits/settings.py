"""EZKL run settings of the fingerprint circuit: fixed, public, and the reasons for each.

The verifier derives the circuit from public facts, so none of these may depend on
the private weights. All figures are measured in BENCHMARKS.md.
"""

from __future__ import annotations

import math

INPUT_SCALE = 8
"""Fixed-point bits of the committed weights (unit-RMS tensors, so ~1/256 resolution)."""
PARAM_SCALE = 8
SCALE_REBASE_MULTIPLIER = 3
"""Rebase only above scale 3·8: weight-sized products (scales 16 and 24) are never
rebased (a rebase costs ~32 rows per value); the n x n terms are."""
DECOMP_BASE = 1024
DECOMP_LEGS = 6
"""Range checks cover ±2^60: room for the shifted terms and the encoder. A small base keeps the range-check
table (DECOMP_BASE entries) small, so small chunk circuits can use few rows: a proof's fixed cost follows
2^logrows, and a chunked proof is many proofs."""
MIN_LOGROWS = 11
"""The DECOMP_BASE-entry range-check table must fit in the columns."""
MAX_LOGROWS = 20
"""The most `choose_logrows` picks for rows alone (more rows spread over more columns)."""
EZKL_MAX_LOGROWS = 26
"""EZKL's largest SRS (`MAX_PUBLIC_SRS`): the most any circuit can use, hiding included (`core.chunks`)."""
ROWS_PER_COLUMN_TARGET = 4
"""logrows is chosen so the circuit spans about this many column blocks (see `choose_logrows`)."""


def run_args_dict(logrows: int) -> dict:
    """The run arguments, as plain data: hashed into the circuit id and recorded in the bundle."""
    return {
        "input_visibility": "polycommit",
        "param_visibility": "fixed",
        "output_visibility": "public",
        "input_scale": INPUT_SCALE,
        "param_scale": PARAM_SCALE,
        "scale_rebase_multiplier": SCALE_REBASE_MULTIPLIER,
        "decomp_base": DECOMP_BASE,
        "decomp_legs": DECOMP_LEGS,
        "ignore_range_check_inputs_outputs": True,
        "logrows": logrows,
    }


def chunk_run_args_dict(logrows: int) -> dict:
    """A chunk circuit's arguments: the fingerprint's, with the output committed (the encode circuit takes it in
    with the same commitment) instead of public."""
    return run_args_dict(logrows) | {"output_visibility": "polycommit"}


ENCODE_SCALE_REBASE_MULTIPLIER = 1
"""The encode circuit's inputs are the chunks' partial terms at their output scale (3·8 = 24, the scale the
single circuit's terms had); rebasing above 1·24 to 24 keeps its arithmetic the single circuit's."""


def encode_run_args_dict(logrows: int, input_scale: int) -> dict:
    """The encode circuit's arguments: inputs at the chunks' output scale, outputs public."""
    return run_args_dict(logrows) | {
        "input_scale": input_scale,
        "scale_rebase_multiplier": ENCODE_SCALE_REBASE_MULTIPLIER,
    }


def run_args(logrows: int | dict):
    """EZKL's PyRunArgs for these settings (the fingerprint circuit's at `logrows`, or the given dictionary).

    `ignore_range_check_inputs_outputs`: EZKL would otherwise decompose every
    committed weight to prove it lies in range (8-9 rows per weight, most of the
    circuit). The weights are bound by their commitment, so an opening reveals them
    exactly; every operation inside the circuit keeps its own range checks; and the
    verifier bounds the public output itself (`verifier.proof_checks`).
    """
    import ezkl

    args = ezkl.PyRunArgs()
    values = logrows if isinstance(logrows, dict) else run_args_dict(logrows)
    for key, value in values.items():
        setattr(args, key, value)
    return args


def choose_logrows(num_rows: int) -> int:
    """Columns of 2^logrows rows; EZKL spreads `num_rows` over as many as needed."""
    wanted = math.ceil(math.log2(max(num_rows, 1) / ROWS_PER_COLUMN_TARGET))
    return min(MAX_LOGROWS, max(MIN_LOGROWS, wanted))
