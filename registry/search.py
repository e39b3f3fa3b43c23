"""Nearest registered fingerprints by z-cosine, over every entry, in memory.

The invariants stay private, so z is what the registry can compare. All z are
kept as one row-normalised float32 matrix; a query is one matrix-vector
product and a partial sort (BENCHMARKS.md measures it). The matrix is refreshed incrementally from the database (rows
with a larger id than the last seen), so several server processes stay
current without a shared cache.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from noseprint.registry.store import Entry
from sqlalchemy import Engine, func, select


@dataclass(frozen=True)
class Match:
    entry_id: int
    z_cosine: float


def normalised(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    norm = np.linalg.norm(z, axis=-1, keepdims=True)
    return z / np.maximum(norm, 1e-12)


class ZIndex:
    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix: np.ndarray | None = None
        self._last_id = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def refresh(self, engine: Engine) -> None:
        with engine.connect() as conn:
            newest = conn.execute(select(func.max(Entry.id))).scalar() or 0
            if newest <= self._last_id:
                return
            rows = conn.execute(select(Entry.id, Entry.z).where(Entry.id > self._last_id).order_by(Entry.id)).all()
        if not rows:
            return
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        block = normalised(np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows]))
        with self._lock:
            if self._matrix is not None and block.shape[1] != self._matrix.shape[1]:
                raise ValueError("the registry holds fingerprints of different z dimensions")
            self._matrix = block if self._matrix is None else np.concatenate([self._matrix, block])
            self._ids = np.concatenate([self._ids, ids])
            self._last_id = int(ids[-1])

    def nearest(self, z: np.ndarray, top: int, exclude: int | None = None) -> list[Match]:
        with self._lock:
            matrix, ids = self._matrix, self._ids
        if matrix is None or top <= 0:
            return []
        query = normalised(np.asarray(z, dtype=np.float32).reshape(-1))
        if query.shape[0] != matrix.shape[1]:
            raise ValueError(f"z has {query.shape[0]} dimensions; the registry's have {matrix.shape[1]}")
        scores = matrix @ query
        if exclude is not None:
            scores = np.where(ids == exclude, -np.inf, scores)
        k = min(top, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Match(int(ids[i]), float(scores[i])) for i in best if np.isfinite(scores[i])]
