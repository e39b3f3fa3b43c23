"""How a fingerprint is split into chunk proofs, each of one fixed shape, linked by commitments.

Every invariant term of a layer is a sum over blocks of its weight matrices' rows (docs/invariants.md):

    QK  = Σ_j sumgroups((E·γa)·Wq_jᵀ) · ((E·γa)·Wk_jᵀ)ᵀ           j: a block of K/V heads (and their query heads)
    VO  = Σ_j ((E·γa)·Wv_jᵀ) · sumgroups(E·Wo_j)ᵀ                   Wo_j: the columns of those query heads
    FFN = Σ_j (((E·γf)·Wg_jᵀ) ⊙ ((E·γf)·Wup_jᵀ)) · (E·Wdown_j)ᵀ      j: a block of FFN rows (plain: one W1_j)

so each block j is one *chunk*: its own proof, whose committed inputs are E, the norm scale and the weight
blocks, and whose output is the n x n partial term plus a blinding block (committed, not public). One *encode*
proof takes every partial term in with the same commitments, sums them, and runs the shifts, standardisation
and the released encoder to the public z_raw, as the single circuit did. Every chunk of one shape is proven
with one key, so key generation is paid once per shape (three per layer shape), not once per chunk.

This module is pure shapes and names (no torch, no EZKL): the prover slices the model with it, the circuits
are built from its shapes, the verifier rebuilds both from the manifest alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import ceil

from noseprint.core.layout import (
    COLUMN,
    MAX_UNUSABLE_ROWS,
    MIN_BLINDING_VALUES,
    ROW,
    CircuitLayout,
    LayerShape,
    Piece,
    unhidden_points,
)

DEFAULT_CHUNK_WEIGHTS = 262_144
"""Weights per chunk proof unless the owner says otherwise. Measured at hidden 384 on 2 cores (BENCHMARKS.md,
"Chunk size"): 1,211 weights proven per second against 789 at 65,536 and 736 at 16,384, a 2.6 GB proving key
and 5.3 GB peak per proof, within the 12 GB a 24 GiB machine gives a prove."""
KINDS = ("qk", "vo", "ffn")
"""The three terms of a layer, in the order of `CircuitLayout.term_shifts`."""


@dataclass(frozen=True)
class Chunking:
    """How many K/V heads an attention chunk takes and how many FFN rows an FFN chunk takes."""

    kv_heads: int
    ffn_rows: int

    def to_dict(self) -> dict[str, int]:
        return {"kv_heads": self.kv_heads, "ffn_rows": self.ffn_rows}

    @staticmethod
    def from_dict(data: dict) -> Chunking:
        values = [data["kv_heads"], data["ffn_rows"]]
        if set(data) != {"kv_heads", "ffn_rows"} or any(type(v) is not int or v < 1 for v in values):
            raise ValueError("chunking is kv_heads and ffn_rows, positive integers")
        return Chunking(*values)


@dataclass(frozen=True)
class ChunkShape:
    """Everything a chunk circuit depends on: chunks with equal shapes share one circuit and one key."""

    kind: str
    tokens: int
    hidden: int
    rows: int
    """K/V rows (kv heads x head_dim) of an attention chunk, FFN rows of an FFN chunk."""
    group: int
    """Query heads per K/V head (1 for FFN chunks)."""
    head_dim: int
    gated: bool

    @property
    def q_rows(self) -> int:
        return self.rows * self.group

    @property
    def blinding_rows(self) -> int:
        """Rows of random values appended to the n x n output, so its commitment hides it (at least
        MIN_BLINDING_VALUES values, like every committed weight tensor)."""
        return ceil(MIN_BLINDING_VALUES / self.tokens)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.tokens + self.blinding_rows, self.tokens)

    def input_shapes(self) -> list[tuple[str, tuple[int, int], int]]:
        """(role, weight shape, blinding axis) of the chunk's committed weight inputs, after E and the norm."""
        d, r = self.hidden, self.rows
        if self.kind == "qk":
            return [("q", (self.q_rows, d), ROW), ("k", (r, d), ROW)]
        if self.kind == "vo":
            return [("v", (r, d), ROW), ("o", (d, self.q_rows), COLUMN)]
        ins = [("gate", (r, d), ROW), ("up", (r, d), ROW)] if self.gated else [("ffn_in", (r, d), ROW)]
        return ins + [("ffn_out", (d, r), COLUMN)]

    @property
    def norm_role(self) -> str:
        return "ffn_norm" if self.kind == "ffn" else "attn_norm"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BlockPiece(Piece):
    """A committed block of a model tensor: rows (ROW blinding) or columns (COLUMN) [start, stop) of `tensor`."""

    tensor: str = ""
    start: int = 0
    stop: int = 0


@dataclass(frozen=True)
class Chunk:
    """One chunk proof: which layer and term, which block, its shape and its committed inputs in circuit order
    (E, the norm scale, the weight blocks; the output blinding block follows as the last input)."""

    index: int
    layer: int
    kind: str
    block: int
    shape: ChunkShape
    pieces: tuple[Piece, ...]

    @property
    def name(self) -> str:
        return f"layer{self.layer}.{self.kind}.{self.block}"


def _block_spans(layer: LayerShape, kind: str, chunking: Chunking, block: int) -> dict[str, tuple[int, int]]:
    """Rows (or columns, for o and ffn_out) of each full tensor that block `block` of a `kind` chunk takes."""
    if kind == "ffn":
        span = (block * chunking.ffn_rows, (block + 1) * chunking.ffn_rows)
        return {role: span for role in ("gate", "up", "ffn_in", "ffn_out")}
    rows = chunking.kv_heads * layer.head_dim
    group = layer.heads // layer.kv_heads
    kv = (block * rows, (block + 1) * rows)
    q = (kv[0] * group, kv[1] * group)  # query heads of a K/V head are contiguous (`circuits.graph.sum_query_groups`)
    return {"q": q, "k": kv, "v": kv, "o": q}


def chunk_count(layer: LayerShape, kind: str, chunking: Chunking) -> int:
    return layer.ffn // chunking.ffn_rows if kind == "ffn" else layer.kv_heads // chunking.kv_heads


def chunking_errors(layout: CircuitLayout, chunking: Chunking) -> list[str]:
    """Why `chunking` cannot split `layout` into equal chunks (empty if it can)."""
    errors = []
    for index, layer in enumerate(layout.layers):
        if layer.kv_heads % chunking.kv_heads:
            errors.append(f"layer {index}: {layer.kv_heads} K/V heads do not split into chunks of {chunking.kv_heads}")
        if layer.ffn % chunking.ffn_rows:
            errors.append(f"layer {index}: {layer.ffn} FFN rows do not split into chunks of {chunking.ffn_rows}")
    return errors


def chunk_shape(layout: CircuitLayout, layer: LayerShape, kind: str, chunking: Chunking) -> ChunkShape:
    attention = kind != "ffn"
    return ChunkShape(
        kind=kind,
        tokens=layout.tokens,
        hidden=layout.hidden,
        rows=chunking.kv_heads * layer.head_dim if attention else chunking.ffn_rows,
        group=layer.heads // layer.kv_heads if attention else 1,
        head_dim=layer.head_dim if attention else 1,
        gated=layer.gated and not attention,
    )


def plan_chunks(layout: CircuitLayout, chunking: Chunking) -> list[Chunk]:
    """Every chunk, layer by layer, term by term (qk, vo, ffn), block by block: the encode circuit's input order."""
    problems = chunking_errors(layout, chunking)
    if problems:
        raise ValueError(problems[0])
    embedding = Piece("embedding", (layout.tokens, layout.hidden), ROW)
    chunks: list[Chunk] = []
    for index, layer in enumerate(layout.layers):
        for kind in KINDS:
            shape = chunk_shape(layout, layer, kind, chunking)
            norm = Piece(f"layer{index}.{shape.norm_role}", (1, layout.hidden), ROW)
            for block in range(chunk_count(layer, kind, chunking)):
                spans = _block_spans(layer, kind, chunking, block)
                blocks = tuple(
                    BlockPiece(f"layer{index}.{role}.{block}", dims, axis, f"layer{index}.{role}", *spans[role])
                    for role, dims, axis in shape.input_shapes()
                )
                chunks.append(Chunk(len(chunks), index, kind, block, shape, (embedding, norm, *blocks)))
    return chunks


def committed_pieces(chunks: list[Chunk]) -> list[Piece]:
    """The model commitment's tensors: every distinct piece the chunks take, in order of first use."""
    seen: dict[str, Piece] = {}
    for chunk in chunks:
        for piece in chunk.pieces:
            seen.setdefault(piece.name, piece)
    return list(seen.values())


def distinct_shapes(chunks: list[Chunk]) -> list[ChunkShape]:
    """The chunk circuits to build (and keys to derive), in order of first use."""
    return list(dict.fromkeys(chunk.shape for chunk in chunks))


def terms_chunks(chunks: list[Chunk]) -> list[int]:
    """How many chunks each term has, in term order (layer by layer, qk, vo, ffn)."""
    counts: dict[tuple[int, str], int] = {}
    for chunk in chunks:
        counts[(chunk.layer, chunk.kind)] = counts.get((chunk.layer, chunk.kind), 0) + 1
    return list(counts.values())


def choose_chunking(layout: CircuitLayout, max_weights: int) -> Chunking:
    """The largest equal blocks whose chunks take at most `max_weights` weights (at least one head or row).

    Blocks must divide the heads and FFN rows of every layer, so every chunk of a kind has one shape."""
    heads = _common_divisors([layer.kv_heads for layer in layout.layers])
    rows = _common_divisors([layer.ffn for layer in layout.layers])
    layer = layout.layers[0]
    group = layer.heads // layer.kv_heads
    per_head = (group + 1) * layer.head_dim * layout.hidden
    per_row = (3 if layer.gated else 2) * layout.hidden
    kv = max([h for h in heads if h * per_head <= max_weights], default=1)
    ffn = max([r for r in rows if r * per_row <= max_weights], default=1)
    return Chunking(kv_heads=kv, ffn_rows=ffn)


def _common_divisors(values: list[int]) -> list[int]:
    smallest = min(values)
    return [k for k in range(1, smallest + 1) if all(v % k == 0 for v in values)]


def committed_values(chunks: list[Chunk]) -> list[tuple[tuple[int, int], int, int]]:
    """(committed shape, blinding axis, blinding lines) of every distinct value the chunk proofs commit: the
    weight pieces, and each chunk's partial term with its blinding rows."""
    values = {(p.committed_shape, p.blinding_axis, 1) for p in committed_pieces(chunks)}
    values |= {(c.shape.output_shape, ROW, c.shape.blinding_rows) for c in chunks}
    return sorted(values)


def hidden_at(values: list[tuple[tuple[int, int], int, int]], logrows: int) -> bool:
    """Every point of every value carries at least MIN_BLINDING_VALUES blinding values, for every column height
    EZKL may leave usable at this logrows (2^logrows less a few rows halo2 keeps)."""
    full = 1 << logrows
    return not any(
        unhidden_points(shape, axis, usable, lines)
        for shape, axis, lines in values
        for usable in range(full - MAX_UNUSABLE_ROWS, full + 1)
    )


def hiding_logrows(chunks: list[Chunk], at_least: int, at_most: int) -> int:
    """The least logrows >= at_least at which every committed point is hidden (issue 33: a row-blinded block
    longer than one KZG column had its blinding in its last point only). ValueError past at_most."""
    values = committed_values(chunks)
    for logrows in range(at_least, at_most + 1):
        if hidden_at(values, logrows):
            return logrows
    raise ValueError(f"no logrows up to {at_most} hides every commitment point: choose smaller chunks")
