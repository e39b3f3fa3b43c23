"""The invariant terms computed block by block from memory-mapped tensors, in memory that does not grow with
the model: the blocks are the chunked proof's (`core.chunks`), so the fingerprint and the proof split a
layer the same way, and each block's partial term is what one chunk proof outputs.

Every term is a sum over blocks of its weight matrices' rows (core/chunks.py has the derivation):

    QK  = Σ_j sumgroups((E·γa)·Wq_jᵀ) · ((E·γa)·Wk_jᵀ)ᵀ
    VO  = Σ_j ((E·γa)·Wv_jᵀ) · sumgroups(E·Wo_j)ᵀ
    FFN = Σ_j (((E·γf)·Wg_jᵀ) ⊙ ((E·γf)·Wup_jᵀ)) · (E·Wdown_j)ᵀ

so one block of each matrix is in memory at a time (as float64: the sums agree with the whole-tensor
`models.invariants.layer_terms` to float64 rounding, ~1e-15 relative, and the blocks are large enough that
the float64 products run at memory speed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from core.chunks import BlockPiece, Chunk, Chunking, ChunkShape, choose_chunking, plan_chunks
from core.layout import ROW, CircuitLayout, LayerShape
from models.architectures import Matrix
from models.checkpoint import LazyMatrix

STREAM_BLOCK_WEIGHTS = 16 * 2**20
"""Most weights one block of a term takes (all its matrices together): 128 MB as float64, so a block's
arrays and their temporaries stay within a few hundred MB at any model size, while a block's products are
still long enough to run at memory speed."""
NORM_ROLES = ("attn_norm", "ffn_norm")
STREAM_THREADS = 1
"""Threads for the conversions and products. Every product has only n (16) rows, so it runs at memory speed
and a second thread gains little on an idle machine, while on a busy one (another job on the same cores) the
spinning BLAS threads cost several-fold: one FFN block, 84 ms with two OpenBLAS threads against 11.5 ms with
one, on the loaded 2-core bench machine (BENCHMARKS.md, issue 21)."""

Values = Callable[[str, np.ndarray], np.ndarray]
"""(role, float64 block) -> the values the term uses (the identity for the raw terms; the fingerprint's
circuit values quantise each block with its whole tensor's RMS)."""


@dataclass
class BlockStats:
    """What one streamed pass saw besides the terms: each role's sum of squares (its RMS, for quantising
    the tensor as a whole in a second pass) and its element count."""

    sum_squares: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, role: str, block: np.ndarray) -> None:
        flat = block.ravel()
        self.sum_squares[role] = self.sum_squares.get(role, 0.0) + float(flat @ flat)
        self.counts[role] = self.counts.get(role, 0) + flat.size

    def rms(self, role: str) -> float:
        return float(np.sqrt(self.sum_squares[role] / self.counts[role]))


def stream_chunking(tokens: int, shape: LayerShape, block_weights: int = STREAM_BLOCK_WEIGHTS) -> Chunking:
    """The largest chunk-plan blocks within `block_weights` (at least one head, one FFN row)."""
    return choose_chunking(CircuitLayout(tokens=tokens, hidden=shape.hidden, layers=(shape,)), block_weights)


def layer_chunks(tokens: int, shape: LayerShape, chunking: Chunking) -> list[Chunk]:
    """One layer's chunks as the chunked proof plans them."""
    return plan_chunks(CircuitLayout(tokens=tokens, hidden=shape.hidden, layers=(shape,)), chunking)


def read_block(matrix: Matrix, piece: BlockPiece) -> np.ndarray:
    """The rows (ROW pieces: readers) or columns (COLUMN: writers) [start, stop) of a role, as a new float64
    array (the caller's `values` may work on it in place)."""
    span = (piece.start, piece.stop)
    if isinstance(matrix, LazyMatrix):
        return matrix.block(span, None) if piece.blinding_axis == ROW else matrix.block(None, span)
    part = matrix[slice(*span)] if piece.blinding_axis == ROW else matrix[:, slice(*span)]
    return np.array(part, dtype=np.float64)


def sum_groups(activation: np.ndarray, shape: ChunkShape) -> np.ndarray:
    """(n, kv*group*hd) -> (n, kv*hd): the query heads sharing a K/V head added (`circuits.graph`'s
    `sum_query_groups`), equal to repeating the K/V heads as `models.invariants.repeat_kv` does."""
    if shape.group == 1:
        return activation
    n = activation.shape[0]
    return activation.reshape(n, -1, shape.group, shape.head_dim).sum(axis=2).reshape(n, -1)


def chunk_term(e: np.ndarray, norm: np.ndarray, shape: ChunkShape, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
    """The n x n partial term of one chunk (what its chunk proof outputs, before quantisation)."""
    reader_in = e * norm  # γ travels with the readers
    if shape.kind == "qk":
        return sum_groups(reader_in @ blocks["q"].T, shape) @ (reader_in @ blocks["k"].T).T
    if shape.kind == "vo":
        return (reader_in @ blocks["v"].T) @ sum_groups(e @ blocks["o"], shape).T
    if shape.gated:
        hidden = (reader_in @ blocks["gate"].T) * (reader_in @ blocks["up"].T)
    else:
        hidden = reader_in @ blocks["ffn_in"].T
    return hidden @ (e @ blocks["ffn_out"]).T


def streamed_layer_terms(
    e: np.ndarray,
    weights: Mapping[str, Matrix],
    shape: LayerShape,
    values: Values | None = None,
    stats: BlockStats | None = None,
    on_block: Callable[[int], object] | None = None,
    block_weights: int = STREAM_BLOCK_WEIGHTS,
) -> np.ndarray:
    """(3, n, n): QK, VO, FFN of one layer, summed over the chunk plan's blocks, reading one block at a time.

    `values` maps each block (and norm) before use; `stats` collects each role's sum of squares of the raw
    blocks; `on_block(weights)` is told each block's weight count (progress)."""
    chunks = layer_chunks(e.shape[0], shape, stream_chunking(e.shape[0], shape, block_weights))
    norms = {role: _prepared(role, np.array(weights[role], dtype=np.float64), values, stats) for role in NORM_ROLES}
    terms = {kind: np.zeros((e.shape[0], e.shape[0])) for kind in ("qk", "vo", "ffn")}
    for chunk in chunks:
        blocks = {}
        for piece in chunk.pieces[2:]:  # E and the norm come first (`plan_chunks`)
            assert isinstance(piece, BlockPiece)
            role = piece.tensor.split(".", 1)[1]
            blocks[role] = _prepared(role, read_block(weights[role], piece), values, stats)
        terms[chunk.kind] += chunk_term(e, norms[chunk.shape.norm_role], chunk.shape, blocks)
        if on_block is not None:
            on_block(sum(block.size for block in blocks.values()))
        del blocks
    return np.stack([terms["qk"], terms["vo"], terms["ffn"]])


@contextmanager
def stream_threads(count: int = STREAM_THREADS) -> Iterator[None]:
    """BLAS and torch limited to `count` threads while streaming, restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with threadpool_limits(limits=count):
            yield
    finally:
        torch.set_num_threads(previous)


def _prepared(role: str, block: np.ndarray, values: Values | None, stats: BlockStats | None) -> np.ndarray:
    if stats is not None:
        stats.add(role, block)
    return block if values is None else values(role, block)


def layer_weight_count(shape: LayerShape) -> int:
    """Weights a streamed pass over one layer reads (progress totals)."""
    return sum(rows * cols for role, (rows, cols), _ in shape.tensor_shapes() if role not in NORM_ROLES)
