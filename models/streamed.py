"""The invariant terms computed block by block from memory-mapped tensors, in memory that does not grow with
the model, summed over the chunked proof's own blocks (`core.chunks`): each chunk's partial term is computed
by `chunk_term` (or `partial_term`), the function the prover sums too, and is what that chunk's proof outputs.

Every term is a sum over blocks of its weight matrices' rows (core/chunks.py has the derivation):

    QK  = Σ_j sumgroups((E·γa)·Wq_jᵀ) · ((E·γa)·Wk_jᵀ)ᵀ
    VO  = Σ_j ((E·γa)·Wv_jᵀ) · sumgroups(E·Wo_j)ᵀ
    FFN = Σ_j (((E·γf)·Wg_jᵀ) ⊙ ((E·γf)·Wup_jᵀ)) · (E·Wdown_j)ᵀ

and each block enters only through its *activations*, the n-row products (E·γ)·W_jᵀ (readers) and E·W_j
(writers: the columns of Wo and Wdown). So a streamed layer reads every matrix once, in blocks of its stored
rows (contiguous in the file, whatever the layout: a reader stored (in, out), as GPT-2's Conv1D, adds its
block's product instead of filling its columns), converts each block from the page cache into one reused
float32 buffer, multiplies it by E (BLAS, float32 products of 16-row matrices, accumulated in float64), and
drops the block's mapped pages. Memory holds one block and the n x width activations, at any model size;
the chunk plan then slices the activations, and the partial terms are summed in float64.

Float32 blocks: the terms agree with float64 to ~1e-7 of a term's largest entry (tests/test_streamed_reading.py
bounds it at 1e-5), far below what moves z (the fingerprint's z is floor(z·2^12)); `dtype=torch.float64`
gives the float64 sums (the tests' exact check of the block plan).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import cast

import numpy as np
import torch
from noseprint.core.chunks import (
    DEFAULT_CHUNK_WEIGHTS,
    BlockPiece,
    Chunk,
    Chunking,
    ChunkShape,
    choose_chunking,
    plan_chunks,
)
from noseprint.core.layout import ROW, CircuitLayout, LayerShape
from noseprint.models.architectures import Matrix
from noseprint.models.checkpoint import LazyMatrix
from noseprint.models.invariants import Routing, router_input
from noseprint.models.views import View
from threadpoolctl import threadpool_limits

STREAM_BLOCK_WEIGHTS = 1 << 20
"""Weights read and converted at a time: 4 MB as float32, so the converted block is still in the core's cache
when BLAS multiplies it. Measured on the loaded 2-core bench machine (one 70B matrix, one thread, fp16 to
float32 from the map and the product): 1.3-1.8 ns a weight at 2^18-2^20, 1.9-3.2 at 2^22 (the old 16 M-weight
float64 blocks: ~18 ns a weight, most of it faulting in a fresh array for every block)."""
STREAM_DTYPE = torch.float32
NORM_ROLES = ("attn_norm", "ffn_norm")
READER_NORMS = {"q": "attn_norm", "k": "attn_norm", "v": "attn_norm", "gate": "ffn_norm", "up": "ffn_norm",
                "ffn_in": "ffn_norm"}  # fmt: skip
"""Readers and the norm whose scale γ travels with them; the other matrices (o, ffn_out) are writers."""
STREAM_THREADS = 1
"""Threads for the conversions and products. Every product has only n (16) rows, so it runs at memory speed
and a second thread gains little on an idle machine, while on a busy one (another job on the same cores) the
spinning BLAS threads cost several-fold: one FFN block, 84 ms with two OpenBLAS threads against 11.5 ms with
one, on the loaded 2-core bench machine (BENCHMARKS.md, issue 21). The two fingerprinted layers run side by
side instead (`lineage.fingerprint`)."""

Activations = Mapping[str, np.ndarray]


def stream_chunking(tokens: int, shape: LayerShape, chunk_weights: int = DEFAULT_CHUNK_WEIGHTS) -> Chunking:
    """The chunk plan's blocks the terms are summed over: the chunked proof's default, the largest within
    `chunk_weights` (at least one head, one FFN row)."""
    return choose_chunking(CircuitLayout(tokens=tokens, hidden=shape.hidden, layers=(shape,)), chunk_weights)


def layer_chunks(tokens: int, shape: LayerShape, chunking: Chunking) -> list[Chunk]:
    """One layer's chunks as the chunked proof plans them."""
    return plan_chunks(CircuitLayout(tokens=tokens, hidden=shape.hidden, layers=(shape,)), chunking)


def chunk_pieces(chunk: Chunk) -> Iterator[tuple[str, BlockPiece]]:
    """(role, block) of each weight block a chunk takes (E and the norm come first in `plan_chunks`)."""
    for piece in chunk.pieces[2:]:
        assert isinstance(piece, BlockPiece)
        yield piece.tensor.split(".", 1)[1], piece


def piece_block(matrix: np.ndarray, piece: BlockPiece) -> np.ndarray:
    """The rows (ROW pieces: readers) or columns (COLUMN: writers) [start, stop) of a role held in memory."""
    return matrix[piece.start : piece.stop] if piece.blinding_axis == ROW else matrix[:, piece.start : piece.stop]


def sum_groups(activation: np.ndarray, shape: ChunkShape) -> np.ndarray:
    """(n, kv*group*hd) -> (n, kv*hd): the query heads sharing a K/V head added (`circuits.graph`'s
    `sum_query_groups`), equal to repeating the K/V heads as `models.invariants.repeat_kv` does."""
    if shape.group == 1:
        return activation
    n = activation.shape[0]
    return activation.reshape(n, -1, shape.group, shape.head_dim).sum(axis=2).reshape(n, -1)


def chunk_activations(e: np.ndarray, norm: np.ndarray, blocks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each weight block's n-row product: (E·γ)·W_jᵀ for a reader (γ travels with the readers), E·W_j for a
    writer's columns."""
    reader_in = e * norm
    return {role: reader_in @ block.T if role in READER_NORMS else e @ block for role, block in blocks.items()}


def partial_term(shape: ChunkShape, acts: Activations) -> np.ndarray:
    """The n x n partial term of one chunk from its blocks' activations."""
    if shape.kind == "qk":
        return sum_groups(acts["q"], shape) @ acts["k"].T
    if shape.kind == "vo":
        return acts["v"] @ sum_groups(acts["o"], shape).T
    hidden = acts["gate"] * acts["up"] if shape.gated else acts["ffn_in"]
    if "route" in acts:  # a mixture of experts: each neuron weighted by its expert's routing weight
        hidden = hidden * acts["route"]
    return hidden @ acts["ffn_out"].T


def chunk_term(e: np.ndarray, norm: np.ndarray, shape: ChunkShape, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
    """The n x n partial term of one chunk from its weight blocks (what its chunk proof outputs, before
    quantisation)."""
    return partial_term(shape, chunk_activations(e, norm, blocks))


def summed_terms(chunks: list[Chunk], partial: Callable[[Chunk], np.ndarray], tokens: int) -> np.ndarray:
    """(3, n, n): QK, VO, FFN of one layer, each the float64 sum of its chunks' partial terms."""
    terms = {kind: np.zeros((tokens, tokens)) for kind in ("qk", "vo", "ffn")}
    for chunk in chunks:
        terms[chunk.kind] += partial(chunk)
    return np.stack([terms["qk"], terms["vo"], terms["ffn"]])


def planned_layer_terms(
    e: np.ndarray, weights: Mapping[str, np.ndarray], shape: LayerShape, chunking: Chunking
) -> np.ndarray:
    """(3, n, n) of a layer held in memory (the prover's quantised values): the sum of `chunk_term` over the
    chunk plan's blocks, as the encode proof sums the chunk proofs' outputs."""
    tokens = e.shape[0]

    def partial(chunk: Chunk) -> np.ndarray:
        blocks = {role: piece_block(weights[role], piece) for role, piece in chunk_pieces(chunk)}
        return chunk_term(e, weights[chunk.shape.norm_role], chunk.shape, blocks)

    return summed_terms(layer_chunks(tokens, shape, chunking), partial, tokens)


def streamed_layer_terms(
    e: np.ndarray,
    weights: Mapping[str, Matrix],
    shape: LayerShape,
    on_block: Callable[[int], object] | None = None,
    block_weights: int = STREAM_BLOCK_WEIGHTS,
    dtype: torch.dtype = STREAM_DTYPE,
    chunking: Chunking | None = None,
) -> np.ndarray:
    """(3, n, n): QK, VO, FFN of one layer, every matrix read once, block by block (`layer_activations`), the
    partial terms of the chunk plan's blocks (`partial_term` on the activations' slices) summed."""
    tokens = e.shape[0]
    acts = layer_activations(e, weights, shape, on_block, block_weights, dtype)
    chunks = layer_chunks(tokens, shape, chunking or stream_chunking(tokens, shape))

    def partial(chunk: Chunk) -> np.ndarray:
        sliced = {role: acts[role][:, p.start : p.stop] for role, p in chunk_pieces(chunk)}
        if "route" in acts and chunk.kind == "ffn":
            piece = dict(chunk_pieces(chunk))["gate"]
            sliced["route"] = acts["route"][:, piece.start : piece.stop]
        return partial_term(chunk.shape, sliced)

    return summed_terms(chunks, partial, tokens)


def layer_activations(
    e: np.ndarray,
    weights: Mapping[str, Matrix],
    shape: LayerShape,
    on_block: Callable[[int], object] | None = None,
    block_weights: int = STREAM_BLOCK_WEIGHTS,
    dtype: torch.dtype = STREAM_DTYPE,
) -> dict[str, np.ndarray]:
    """Every matrix's n-row activation (readers (E·γ)·Wᵀ, writers E·W) as float64, each matrix read once in
    blocks of `block_weights` through one reused `dtype` buffer."""
    norms = {role: np.asarray(weights[role], dtype=np.float64) for role in NORM_ROLES}
    buffer = torch.empty(block_weights, dtype=dtype)
    acts = {}
    for role, _, _ in shape.tensor_shapes():
        if role in NORM_ROLES:
            continue
        norm = READER_NORMS.get(role)
        left = e * norms[norm] if norm is not None else e
        acts[role] = activation(weights[role], left, norm is not None, buffer, on_block)
    if "routing" in weights:  # the router reads the RMS-normalised rows (`models.invariants.router_input`)
        router = activation(weights["router"], router_input(e, norms["ffn_norm"]), True, buffer, on_block)
        routing = cast(Routing, weights["routing"])
        acts["route"] = routing.neuron_weights(router + np.asarray(weights["router_bias"]))
    return acts


def activation(
    matrix: Matrix,
    left: np.ndarray,
    reader: bool,
    buffer: torch.Tensor,
    on_block: Callable[[int], object] | None = None,
) -> np.ndarray:
    """left·Vᵀ (a reader) or left·V (a writer) of the view V, float64 out.

    A lazy view is read in blocks of its stored rows S_b: the product takes either S itself (a reader stored
    transposed, a writer stored plainly), and each block adds left[:, b]·S_b, or Sᵀ, and each block fills
    columns b with left·S_bᵀ. Each block is converted into `buffer` (its dtype: float32, or float64 for the
    exact check) and its mapped pages dropped once read. A `View` (stacked experts, composed low-rank maps)
    computes its activation from its parts', each read so."""
    if isinstance(matrix, View):
        return matrix.activation(left, reader, lambda part, part_left, part_reader: activation(
            part, part_left, part_reader, buffer, on_block))  # fmt: skip
    if not isinstance(matrix, LazyMatrix):
        values = np.asarray(matrix, dtype=np.float64)
        if on_block is not None:
            on_block(values.size)
        return left @ values.T if reader else left @ values
    rows, cols = matrix.stored_shape
    direct = reader == matrix.transposed
    factor = torch.from_numpy(left).to(buffer.dtype)
    factor_t = factor.T.contiguous()
    out = np.zeros((left.shape[0], cols)) if direct else np.zeros((rows, left.shape[0]))
    if buffer.numel() < cols:
        buffer = torch.empty(cols, dtype=buffer.dtype)
    step = buffer.numel() // cols
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        block = buffer[: (stop - start) * cols].view(stop - start, cols)
        block.copy_(matrix.stored_block((start, stop)))
        matrix.done((start, stop))
        if direct:
            out += (factor[:, start:stop] @ block).numpy()
        else:  # S_b·leftᵀ: ~3x faster than left·S_bᵀ for 16-column products (MKL, one thread)
            out[start:stop] = (block @ factor_t).numpy()
        if on_block is not None:
            on_block(block.numel())
    return out if direct else out.T


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


def layer_weight_count(shape: LayerShape) -> int:
    """Weights a streamed pass over one layer reads (progress totals)."""
    return sum(rows * cols for role, (rows, cols), _ in shape.tensor_shapes() if role not in NORM_ROLES)
