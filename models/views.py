"""Matrices an adapter assembles from stored tensors without forming them: experts stacked, low-rank maps
composed, rows rescaled, gathered or padded with zeros (issue 35's families).

The terms only ever use a matrix M through its *activation*, the n-row product with the selected embedding
rows: `left·Mᵀ` for a reader (M is (out, in), the columns of the activation are M's rows) and `left·M` for a
writer (the columns of the activation are M's columns). Every view here computes its activation from its parts'
activations (`act`, the caller's reader: `models.streamed.activation` streams each stored part block by block),
so a view costs the reads of its parts, never the product matrix: a composed low-rank map is two thin products,
a stack of 128 experts 128 streamed matrices. `np.asarray(view)` forms the matrix (the in-memory path,
`Adapter.load_layer`, at provable sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Act = Callable[[Any, np.ndarray, bool], np.ndarray]
"""(matrix, left, reader) -> its activation, float64 (n x out for a reader, n x columns for a writer)."""

READER_AXIS, WRITER_AXIS = 0, 1
"""The axis of M a view's output runs along: a reader's rows, a writer's columns."""


class View:
    """A matrix known by its parts. Subclasses define `shape`, `activation` and `dense`."""

    ndim = 2

    @property
    def shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def activation(self, left: np.ndarray, reader: bool, act: Act) -> np.ndarray:
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        raise NotImplementedError

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.dense()
        return whole if dtype is None else whole.astype(dtype)


def dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix, dtype=np.float64)


def _check_axis(axis: int, reader: bool, what: str) -> None:
    if axis != (READER_AXIS if reader else WRITER_AXIS):
        raise ValueError(f"a {what} along axis {axis} is read as a {'reader' if reader else 'writer'}: unsupported")


@dataclass(frozen=True, eq=False)
class Stacked(View):
    """Parts concatenated along `axis`: a reader's rows (experts' gate or up rows), a writer's columns (their
    down columns). The activation is the parts' activations side by side."""

    parts: tuple[Any, ...]
    axis: int

    @property
    def shape(self) -> tuple[int, int]:
        shapes = [tuple(part.shape) for part in self.parts]
        other = 1 - self.axis
        if len({s[other] for s in shapes}) != 1:
            raise ValueError(f"stacked parts disagree on axis {other}: {shapes}")
        total = sum(s[self.axis] for s in shapes)
        return (total, shapes[0][other]) if self.axis == 0 else (shapes[0][other], total)

    def activation(self, left: np.ndarray, reader: bool, act: Act) -> np.ndarray:
        _check_axis(self.axis, reader, "stack")
        return np.concatenate([act(part, left, reader) for part in self.parts], axis=1)

    def dense(self) -> np.ndarray:
        return np.concatenate([dense(part) for part in self.parts], axis=self.axis)


@dataclass(frozen=True, eq=False)
class Product(View):
    """outer · diag(mid) · inner · factor: a low-rank map composed through a norm's scale (MLA's q_b·γ·q_a)."""

    outer: Any
    inner: Any
    mid: np.ndarray | None = None
    factor: float = 1.0

    @property
    def shape(self) -> tuple[int, int]:
        if self.outer.shape[1] != self.inner.shape[0]:
            raise ValueError(f"cannot compose {tuple(self.outer.shape)} with {tuple(self.inner.shape)}")
        return (self.outer.shape[0], self.inner.shape[1])

    def _mid(self) -> np.ndarray | float:
        return 1.0 if self.mid is None else np.asarray(self.mid, dtype=np.float64).reshape(1, -1)

    def activation(self, left: np.ndarray, reader: bool, act: Act) -> np.ndarray:
        if reader:  # left·(O·D·I)ᵀ = ((left·Iᵀ)·D)·Oᵀ
            return act(self.outer, act(self.inner, left, True) * self._mid(), True) * self.factor
        return act(self.inner, act(self.outer, left, False) * self._mid(), False) * self.factor  # ((left·O)·D)·I

    def dense(self) -> np.ndarray:
        return (dense(self.outer) * self._mid()) @ dense(self.inner) * self.factor


@dataclass(frozen=True, eq=False)
class Scaled(View):
    """Each row (axis 0) or column (axis 1) of `base` times `scale[i]`: the activation's columns scaled."""

    base: Any
    scale: np.ndarray
    axis: int = READER_AXIS

    @property
    def shape(self) -> tuple[int, int]:
        shape = tuple(self.base.shape)
        if len(self.scale) != shape[self.axis]:
            raise ValueError(f"{len(self.scale)} scales for {shape[self.axis]} lines")
        return (shape[0], shape[1])

    def activation(self, left: np.ndarray, reader: bool, act: Act) -> np.ndarray:
        _check_axis(self.axis, reader, "scaling")
        return act(self.base, left, reader) * np.asarray(self.scale, dtype=np.float64).reshape(1, -1)

    def dense(self) -> np.ndarray:
        scale = np.asarray(self.scale, dtype=np.float64)
        return dense(self.base) * (scale[:, None] if self.axis == 0 else scale[None, :])


@dataclass(frozen=True, eq=False)
class Gathered(View):
    """Rows (axis 0) or columns (axis 1) `index` of `base`, in that order, repeats allowed: per-head layouts
    (MLA's key heads share one rotary block), interleaved halves (gpt-oss's gate and up), zero padding."""

    base: Any
    index: np.ndarray
    axis: int = READER_AXIS

    @property
    def shape(self) -> tuple[int, int]:
        shape = list(self.base.shape)
        shape[self.axis] = len(self.index)
        return (shape[0], shape[1])

    def activation(self, left: np.ndarray, reader: bool, act: Act) -> np.ndarray:
        _check_axis(self.axis, reader, "selection")
        return act(self.base, left, reader)[:, np.asarray(self.index)]

    def dense(self) -> np.ndarray:
        return np.take(dense(self.base), np.asarray(self.index), axis=self.axis)


@dataclass(frozen=True, eq=False)
class Zeros(View):
    """An all-zero block (padding), never read."""

    rows: int
    cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    def activation(self, left: np.ndarray, reader: bool, act: Act) -> np.ndarray:
        return np.zeros((left.shape[0], self.rows if reader else self.cols))

    def dense(self) -> np.ndarray:
        return np.zeros((self.rows, self.cols))


ROW_NORM_BLOCK = 1 << 20
"""Weights read at a time when a view needs the norms of a stored matrix's rows."""


def row_square_sums(matrix: Any, column_scale: np.ndarray | None = None) -> np.ndarray:
    """Σ_j (M_ij·s_j)² for every row i of M (a LazyMatrix is read in blocks of rows, float64)."""
    rows, cols = matrix.shape
    scale = 1.0 if column_scale is None else np.asarray(column_scale, dtype=np.float64).reshape(1, -1)
    step = max(1, ROW_NORM_BLOCK // max(cols, 1))
    if not hasattr(matrix, "block"):
        return ((dense(matrix) * scale) ** 2).sum(axis=1)
    sums = np.empty(rows)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        sums[start:stop] = ((matrix.block((start, stop)) * scale) ** 2).sum(axis=1)
    return sums
