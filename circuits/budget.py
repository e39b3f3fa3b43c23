"""What checking a bundle may cost, bounded from its manifest alone before any work is done.

A bundle's layout decides the circuit a verifier builds and the keys it derives (EZKL setup): minutes
and gigabytes for a big layout, and EZKL aborts the whole process when memory runs out. So before a
circuit that is not cached yet is built, its rows are estimated from the layout and refused above the
budget, and the building runs in a worker process under a memory and a time limit (`circuits.worker`).
A registry therefore only ever builds circuits within its budget, or serves ones it built before.

The estimate is an upper bound fitted to measured circuits (BENCHMARKS.md, "Circuit rows"): rows per committed
weight, per entry of the n x n invariant terms (shifts, peaks, standardisation, encoder) and per value of a gated
FFN's n x ffn activation product (the ROWS_PER_* constants below). `tests/test_budget.py` checks it stays above
the real row count of the circuits the tests build.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from math import prod

from noseprint.core.chunks import Chunking, ChunkShape, distinct_shapes, plan_chunks
from noseprint.core.errors import NoseprintError
from noseprint.core.layout import CircuitLayout
from noseprint.core.whole_model import InferenceShape, LayerPart, LayerPieces, PartSizes, layer_parts, whole_layer

ROWS_PER_WEIGHT = 1.25
ROWS_PER_TERM_ENTRY = 250
TERMS_PER_LAYER = 3
ROWS_PER_GATED_ACTIVATION = 40
"""The gated FFN term multiplies two n x ffn activations and rescales the product (~32 rows a value)."""
BYTES_PER_ROW = 24 << 10
"""Peak memory of EZKL setup per row, rounded up from the measured 11-22 KB (BENCHMARKS.md)."""

DEFAULT_MAX_ROWS = 1_000_000
"""About 24 GB at BYTES_PER_ROW: the released thumbnail circuit (946,901 rows) fits, the audit's
256-token, hidden-1024 layout (EZKL aborted on memory) does not."""
DEFAULT_MAX_SECONDS = 3600
RELEASED_THUMBNAIL_ROWS = 946_901
"""Rows of the released thumbnail circuit (BENCHMARKS.md, "Proving the picture")."""

MAX_ROWS_ENV = "NOSEPRINT_MAX_ROWS"
MAX_MEMORY_ENV = "NOSEPRINT_MAX_MEMORY_GB"
MAX_SECONDS_ENV = "NOSEPRINT_MAX_SECONDS"
GIB = 1 << 30


class OverBudget(NoseprintError):
    """Checking this bundle would cost more than this verifier allows (exit 1: the bundle is refused)."""

    exit_code = 1


@dataclass(frozen=True)
class Budget:
    max_rows: int = DEFAULT_MAX_ROWS
    max_memory_bytes: int = DEFAULT_MAX_ROWS * BYTES_PER_ROW
    max_seconds: int = DEFAULT_MAX_SECONDS

    @classmethod
    def from_env(cls, max_rows: int | None = None) -> Budget:
        """The defaults, overridden by $NOSEPRINT_MAX_ROWS, $NOSEPRINT_MAX_MEMORY_GB, $NOSEPRINT_MAX_SECONDS
        and then by an explicit `max_rows` (the CLI's --max-rows)."""
        rows = max_rows or int(os.environ.get(MAX_ROWS_ENV, DEFAULT_MAX_ROWS))
        memory = int(float(os.environ.get(MAX_MEMORY_ENV, 0)) * GIB) or rows * BYTES_PER_ROW
        seconds = int(os.environ.get(MAX_SECONDS_ENV, DEFAULT_MAX_SECONDS))
        return cls(rows, memory, seconds)


ROWS_PER_PARTIAL_VALUE = 4
"""The encode circuit adds the chunks' partial terms: a few rows per value taken in."""
ROWS_PER_PARTIAL_ENTRY = 48
"""A chunk's n x n partial term is a product rescaled once (about 32 rows a value, and the output's)."""


def estimated_chunk_rows(shape: ChunkShape) -> int:
    """An upper bound on one chunk circuit's rows: its committed values, its n x n output, its activations."""
    n, d = shape.tokens, shape.hidden
    committed = (n + 1) * d + 2 * d + shape.blinding_rows * n
    for _, (rows, cols), _ in shape.input_shapes():
        committed += (rows + 1) * (cols + 1)
    activations = n * shape.rows if shape.gated else 0
    return int(ROWS_PER_WEIGHT * committed) + ROWS_PER_PARTIAL_ENTRY * n * n + ROWS_PER_GATED_ACTIVATION * activations


def estimated_encode_rows(layout: CircuitLayout, chunks: int, output_values: int) -> int:
    """An upper bound on the encode circuit's rows: the sums of the partial terms, then the single circuit's
    per-term part (shifts, peaks, standardisation, encoder)."""
    term_entries = TERMS_PER_LAYER * len(layout.layers) * layout.tokens * layout.tokens
    return ROWS_PER_PARTIAL_VALUE * chunks * output_values + ROWS_PER_TERM_ENTRY * term_entries


def estimated_chunked_rows(layout: CircuitLayout, chunking: Chunking) -> list[int]:
    """Rows of every distinct circuit of a chunked fingerprint (chunk shapes, then encode), from the manifest's
    layout and chunking alone."""
    chunks = plan_chunks(layout, chunking)
    shapes = distinct_shapes(chunks)
    output = shapes[0].output_shape
    return [estimated_chunk_rows(s) for s in shapes] + [estimated_encode_rows(layout, len(chunks), prod(output))]


def refuse_over_budget(rows: int, what: str, budget: Budget) -> None:
    if rows > budget.max_rows:
        raise OverBudget(
            f"{what} would need about {rows:,} rows (about {rows * BYTES_PER_ROW / GIB:.0f} GB) to check; "
            f"this verifier allows {budget.max_rows:,} (--max-rows or ${MAX_ROWS_ENV} raise it)"
        )


# -- the inference circuits (verify-inference, registry inference) ----------------------------------------------

INFERENCE_ATTENTION_FIT = (510.0, 410.0, 171.0, 345.0, 105.0)
"""An attention part's rows = a + weights + t·(b + c·hidden + d·q width) + e·q heads·t² (t: the challenge's
tokens). Fitted to EZKL's counts of the exported circuits (`circuits.challenge_circuits.probe_rows`' settings, no keys):
hidden 16-64, q width 16-64, 8-32 tokens, worst misfit 1e-5, coefficients rounded up (issue 33)."""
INFERENCE_FFN_FIT = (430.0, 237.0, 171.0, 249.0)
"""An FFN part's rows = a + weights + t·(b + c·hidden + d·rows), fitted the same way (exact)."""
INFERENCE_HEAD_FIT = (86.0, 85.0)
"""A head block's rows = weights + t·(a·hidden + b·vocabulary rows): hidden 16-128, 8-64 tokens (exact)."""
INFERENCE_EMBED_FIT = (100.0, 1.5, 41.0, 0.5)
"""The embed circuit's rows = a + t·(b·block weights + c·hidden + d·rows) + d·rows·t², as the head's (exact);
the link circuit's the same at the fingerprint's tokens, with its own hidden-wide term (INFERENCE_LINK_HIDDEN)."""
INFERENCE_LINK_HIDDEN = 115.0


def _attention_rows(weights: int, hidden: int, q_width: int, q_heads: int, tokens: int) -> float:
    a, b, c, d, e = INFERENCE_ATTENTION_FIT
    return a + weights + tokens * (b + c * hidden + d * q_width) + e * q_heads * tokens * tokens


def _ffn_rows(weights: int, hidden: int, rows: int, tokens: int) -> float:
    a, b, c, d = INFERENCE_FFN_FIT
    return a + weights + tokens * (b + c * hidden + d * rows)


def _committed(part: LayerPart) -> int:
    return sum(prod(piece.committed_shape) for piece in part.pieces)


def _layer_circuit_rows(shape: InferenceShape, layer: LayerPieces, part: LayerPart, tokens: int) -> float:
    """One layer proof's circuit: a whole layer (its attention and its FFN in one), or one part of it."""
    whole = whole_layer(layer)
    q_blocks = whole.attention if part.kind == "layer" else len([p for p in part.pieces if p in layer.q])
    ffn_blocks = whole.ffn if part.kind == "layer" else len([p for p in part.pieces if p in layer.gate])
    q_heads = shape.heads * q_blocks // whole.attention
    ffn_rows = shape.ffn * ffn_blocks // whole.ffn
    attention = _attention_rows(0, shape.hidden, q_heads * shape.head_dim, q_heads, tokens) if q_blocks else 0.0
    ffn = _ffn_rows(0, shape.hidden, ffn_rows, tokens) if ffn_blocks else 0.0
    return _committed(part) + attention + ffn


def estimated_inference_rows(
    shape: InferenceShape, layer: LayerPieces, sizes: PartSizes | None, tokens: int, fingerprint_tokens: int
) -> dict[str, int]:
    """Rows of every circuit `verify-inference` would build, by the name `circuits.challenge_circuits.build_inference`
    gives it (embed, layer or attention and ffn, head, link), from the model's shape, one layer's pieces, the
    proofs' layer parts (None: whole layers), the challenge's length and the fingerprint's tokens alone: no torch,
    no EZKL. Fitted at head_dim 8; the weights dominate at real widths (BENCHMARKS.md, "What a layer costs")."""
    rows: dict[str, float] = {}
    for part in layer_parts(layer, sizes):
        rows[part.kind] = max(rows.get(part.kind, 0.0), _layer_circuit_rows(shape, layer, part, tokens))
    d = shape.hidden
    head_rows, embed_rows = shape.head_rows, shape.embed_rows
    head_weights, block_weights = (head_rows + 1) * d, (embed_rows + 1) * d
    h_hidden, h_rows = INFERENCE_HEAD_FIT
    a, per_weight, e_hidden, per_row = INFERENCE_EMBED_FIT
    rows["head"] = head_weights + 2 * d + tokens * (h_hidden * d + h_rows * head_rows)
    for name, t, per_hidden in (("embed", tokens, e_hidden), ("link", fingerprint_tokens, INFERENCE_LINK_HIDDEN)):
        rows[name] = a + t * (per_weight * block_weights + per_hidden * d + per_row * embed_rows)
        rows[name] += per_row * embed_rows * t * t
    return {name: math.ceil(value) for name, value in rows.items()}
