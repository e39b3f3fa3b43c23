"""The committed inputs: which weight values the circuit takes, in which order and shape.

Each fingerprinted tensor is its own private input of the circuit, committed by
EZKL's KZG `polycommit` (one commitment per tensor). EZKL does not blind those
commitments, so every tensor carries one extra line of uniformly random integers
(its *blinding line*): an extra row for tensors used as E·Wᵀ, an extra column for
tensors used as E·W. The extra line only ever reaches a small n x width
intermediate, which the circuit slices away.

Why separate inputs: slicing one long input costs EZKL rows proportional to the
whole input on every slice (measured: 15 slices of a 19k vector tripled the rows),
while separate inputs cost nothing to split.

This module is the single definition of the inputs, shared by the model adapters
(which read them), the prover (which fills them), the circuit (which consumes them)
and the verifier (which rebuilds the circuit from the shapes alone); it is part of
the bundle format (the manifest's `circuit.layout`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from math import prod

BLINDING_BITS = 16
"""Each blinding value is a uniform integer in [-2^15, 2^15).

A blinding line has at least 16 values, so at least 256 bits of entropy per
commitment: testing a guessed model against a commitment means solving a
multi-base discrete-log problem over that range (README, "Commitment").
"""
MIN_BLINDING_VALUES = 16

ROW = 0
"""Blinding line appended as an extra row (tensor used as E·Wᵀ)."""
COLUMN = 1
"""Blinding line appended as an extra column (tensor used as E·W)."""
MAX_UNUSABLE_ROWS = 64
"""halo2 keeps blinding factors + 1 rows of every column unusable; a handful for these circuits, never this
many: 2^logrows - MAX_UNUSABLE_ROWS is a lower bound on a commitment point's values."""


def point_count(size: int, usable: int) -> int:
    """How many KZG points EZKL's polycommit gives an input of `size` values: it fills columns of `usable`
    rows, row-major, one point per column (src/circuit/modules/polycommit.rs), and always opens one more."""
    return size // usable + 1


def _blinding_before(index: int, committed_shape: tuple[int, int], axis: int, lines: int) -> int:
    """Blinding values among the first `index` values of a committed piece, flattened row-major."""
    rows, cols = committed_shape
    if axis == ROW:  # the last `lines` rows are blinding
        return min(max(index - (rows - lines) * cols, 0), lines * cols)
    return index // cols  # the last value of every row: cols - 1, 2·cols - 1, ...


def point_blinding(committed_shape: tuple[int, int], axis: int, usable: int, lines: int = 1) -> list[tuple[int, int]]:
    """(weights, blinding values) in each KZG point of a committed piece, in point order.

    A point is a separate commitment: one that holds weights and little blinding can be recomputed from a
    guessed model and compared (issue 33: a row-blinded piece longer than a column carried its blinding in its
    last point only). Every point that holds a weight must hold at least MIN_BLINDING_VALUES. `lines`: blinding
    rows at the end of a row-blinded value (a chunk's partial term has several; a weight tensor one)."""
    size = prod(committed_shape)
    spans = []
    for point in range(point_count(size, usable)):
        start, stop = min(point * usable, size), min((point + 1) * usable, size)
        blinding = _blinding_before(stop, committed_shape, axis, lines) - _blinding_before(
            start, committed_shape, axis, lines
        )
        spans.append((stop - start - blinding, blinding))
    return spans


def unhidden_points(committed_shape: tuple[int, int], axis: int, usable: int, lines: int = 1) -> list[int]:
    """The points of a committed piece that hold weights but fewer than MIN_BLINDING_VALUES blinding values."""
    spans = point_blinding(committed_shape, axis, usable, lines)
    return [i for i, (weights, blinding) in enumerate(spans) if weights and blinding < MIN_BLINDING_VALUES]


@dataclass(frozen=True)
class LayerShape:
    """Shapes of one fingerprinted transformer layer, in Hugging Face (out, in) convention."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    gated: bool

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def tensor_shapes(self) -> list[tuple[str, tuple[int, int], int]]:
        """Ordered (role, shape, blinding axis) of the tensors this layer contributes."""
        d, f = self.hidden, self.ffn
        shapes = [
            ("attn_norm", (1, d), ROW),
            ("q", (self.q_width, d), ROW),
            ("k", (self.kv_width, d), ROW),
            ("v", (self.kv_width, d), ROW),
            ("o", (d, self.q_width), COLUMN),
        ]
        shapes += [("ffn_norm", (1, d), ROW)]
        if self.gated:
            shapes += [("gate", (f, d), ROW), ("up", (f, d), ROW)]
        else:
            shapes += [("ffn_in", (f, d), ROW)]
        shapes += [("ffn_out", (d, f), COLUMN)]
        return shapes


@dataclass(frozen=True)
class Piece:
    """One committed input: a weight tensor plus its blinding line."""

    name: str
    shape: tuple[int, int]
    blinding_axis: int

    @property
    def blinding_count(self) -> int:
        return self.shape[1 - self.blinding_axis]

    @property
    def committed_shape(self) -> tuple[int, int]:
        rows, cols = self.shape
        return (rows + 1, cols) if self.blinding_axis == ROW else (rows, cols + 1)

    @property
    def weight_count(self) -> int:
        return prod(self.shape)

    def unhidden_points(self, usable: int) -> list[int]:
        """Points of this piece's commitment that would not carry the promised blinding (`unhidden_points`)."""
        return unhidden_points(self.committed_shape, self.blinding_axis, usable)


@dataclass(frozen=True)
class CircuitLayout:
    """Everything about the private inputs that the circuit's shape depends on."""

    tokens: int
    hidden: int
    layers: tuple[LayerShape, ...]
    term_shifts: tuple[int, ...] = ()
    """Per-term power-of-two divisors applied before standardisation (see `circuits.graph`)."""

    def pieces(self) -> list[Piece]:
        out = [Piece("embedding", (self.tokens, self.hidden), ROW)]
        for index, layer in enumerate(self.layers):
            out += [Piece(f"layer{index}.{role}", shape, axis) for role, shape, axis in layer.tensor_shapes()]
        return out

    @property
    def weight_count(self) -> int:
        """Fingerprinted weight values (what the commitment binds, blinding excluded)."""
        return sum(piece.weight_count for piece in self.pieces())

    def short_blinding_lines(self) -> list[str]:
        """Pieces whose blinding line has fewer than MIN_BLINDING_VALUES values (too little entropy to hide)."""
        return [piece.name for piece in self.pieces() if piece.blinding_count < MIN_BLINDING_VALUES]

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "hidden": self.hidden,
            "layers": [asdict(x) for x in self.layers],
            "term_shifts": list(self.term_shifts),
        }

    @staticmethod
    def from_dict(data: dict) -> CircuitLayout:
        """Strict: integers must be ints (not 8.0, not inf), `gated` a bool; ValueError, KeyError or
        TypeError otherwise, never a shape that breaks torch later."""
        return CircuitLayout(
            tokens=_whole(data["tokens"]),
            hidden=_whole(data["hidden"]),
            layers=tuple(_layer(layer) for layer in data["layers"]),
            term_shifts=tuple(_whole(k) for k in data["term_shifts"]),
        )


def _whole(value: object) -> int:
    if type(value) is not int:
        raise ValueError(f"a {type(value).__name__} where an integer belongs")
    return value


def _layer(data: dict) -> LayerShape:
    fields = {name: _whole(data[name]) for name in ("hidden", "heads", "kv_heads", "head_dim", "ffn")}
    if type(data["gated"]) is not bool or set(data) != {*fields, "gated"}:
        raise ValueError("a layer is hidden, heads, kv_heads, head_dim, ffn (integers) and gated (true or false)")
    return LayerShape(**fields, gated=data["gated"])


def with_term_shifts(layout: CircuitLayout, shifts: list[int]) -> CircuitLayout:
    return replace(layout, term_shifts=tuple(shifts))
