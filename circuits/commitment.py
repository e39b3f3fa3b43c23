"""The weight commitment: which integers are committed, and the owner's private opening.

Scheme `noseprint-kzg-blinded/v1` (README, "Commitment"):

1. Each fingerprinted tensor W (and E, the selected embedding rows) is scaled to
   unit root-mean-square and quantised: q = round(W / rms(W) · 2^s), s = input scale.
   Unit RMS gives every tensor the same precision; HuRef's standardised terms do not
   change under a positive rescaling of any tensor, so nothing is lost.
2. A blinding line of uniformly random integers in [-2^15, 2^15) is appended
   (`core.layout`), drawn from the operating system's CSPRNG.
3. The commitment to a tensor is EZKL's KZG commitment (`polycommit`) of that
   integer matrix, row-major, under the circuit's verification key and the SRS.

The opening (blinding lines) stays with the owner. With the model and the opening,
anyone can recompute q exactly and check the commitment.
"""

from __future__ import annotations

import secrets

import numpy as np

from circuits.settings import INPUT_SCALE
from core.errors import UsageError
from core.layout import BLINDING_BITS, MIN_BLINDING_VALUES, ROW, CircuitLayout, Piece
from core.statement import owner_limbs

SCHEME = "noseprint-kzg-blinded/v1"


def quantise(weights: np.ndarray, scale: int) -> np.ndarray:
    """round(W / rms(W) * 2^scale) as int64; an all-zero tensor stays zero."""
    rms = float(np.sqrt(np.mean(np.square(weights, dtype=np.float64))))
    unit = weights / rms if rms > 0 else weights
    return np.rint(unit * float(1 << scale)).astype(np.int64)


def random_blinding(count: int) -> list[int]:
    half = 1 << (BLINDING_BITS - 1)
    return [secrets.randbelow(2 * half) - half for _ in range(count)]


def with_blinding(quantised: np.ndarray, piece: Piece, blinding: list[int]) -> np.ndarray:
    """Append the blinding line as the extra row or column the circuit expects."""
    if len(blinding) != piece.blinding_count:
        raise ValueError(f"{piece.name}: {len(blinding)} blinding values, {piece.blinding_count} expected")
    line = np.asarray(blinding, dtype=np.int64)
    if piece.blinding_axis == ROW:
        return np.vstack([quantised, line[None, :]])
    return np.hstack([quantised, line[:, None]])


def as_circuit_floats(committed: np.ndarray, scale: int) -> list[float]:
    """EZKL reads floats and quantises them with round(x·2^s); x = q/2^s is exact, so it recovers q."""
    if np.abs(committed).max(initial=0) >= 1 << 52:
        raise ValueError("committed integers exceed float64's exact range")
    return (committed.astype(np.float64) / float(1 << scale)).ravel().tolist()


def committed_inputs(
    tensors: dict[str, np.ndarray], layout: CircuitLayout, blinding: dict[str, list[int]] | None = None
) -> tuple[list[np.ndarray], dict[str, list[int]]]:
    """Quantised, blinded tensors in circuit order, and the blinding lines (the opening).

    Fresh blinding is drawn unless `blinding` is given (re-opening a commitment).
    """
    short = layout.short_blinding_lines()
    if short:
        raise UsageError(
            f"{short[0]} would get a blinding line of fewer than {MIN_BLINDING_VALUES} values, too few to hide "
            f"the weights (hidden size {layout.hidden}; the commitment needs at least {MIN_BLINDING_VALUES})"
        )
    committed, opening = [], {}
    for piece in layout.pieces():
        if piece.name not in tensors or (blinding is not None and piece.name not in blinding):
            raise UsageError(f"no tensor {piece.name} to commit to")
        if tuple(tensors[piece.name].shape) != piece.shape:
            shape = tensors[piece.name].shape
            raise UsageError(f"tensor {piece.name} has shape {shape}, the layout says {piece.shape}")
        line = blinding[piece.name] if blinding is not None else random_blinding(piece.blinding_count)
        committed.append(with_blinding(quantise(tensors[piece.name], INPUT_SCALE), piece, line))
        opening[piece.name] = line
    return committed, opening


def circuit_inputs(committed: list[np.ndarray], owner: str | None) -> list[list[float]]:
    """Everything the statement circuit takes: the committed tensors, then the owner's key limbs (public:
    they reappear among the outputs, `core.statement`)."""
    limbs = [float(limb) for limb in owner_limbs(owner)]
    return [as_circuit_floats(c, INPUT_SCALE) for c in committed] + [limbs]
