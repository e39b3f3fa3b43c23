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
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.core.chunks import BlockPiece, Chunk
from noseprint.core.errors import UsageError
from noseprint.core.layout import BLINDING_BITS, MIN_BLINDING_VALUES, ROW, CircuitLayout, Piece
from noseprint.core.statement import owner_limbs

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


def quantised_tensors(tensors: dict[str, np.ndarray], layout: CircuitLayout) -> dict[str, np.ndarray]:
    """Every fingerprinted tensor, whole, quantised at unit RMS (so a block is quantised as part of its tensor,
    and the fingerprint does not depend on how it is chunked)."""
    short = layout.short_blinding_lines()
    if short:
        raise UsageError(
            f"{short[0]} would get a blinding line of fewer than {MIN_BLINDING_VALUES} values, too few to hide "
            f"the weights (hidden size {layout.hidden}; the commitment needs at least {MIN_BLINDING_VALUES})"
        )
    out = {}
    for piece in layout.pieces():
        if piece.name not in tensors:
            raise UsageError(f"no tensor {piece.name} to commit to")
        if tuple(tensors[piece.name].shape) != piece.shape:
            shape = tensors[piece.name].shape
            raise UsageError(f"tensor {piece.name} has shape {shape}, the layout says {piece.shape}")
        out[piece.name] = quantise(tensors[piece.name], INPUT_SCALE)
    return out


def piece_values(quantised: dict[str, np.ndarray], piece: Piece) -> np.ndarray:
    """The integers a piece commits to: a whole tensor, or a block of rows or columns of one."""
    if not isinstance(piece, BlockPiece):
        return quantised[piece.name]
    whole = quantised[piece.tensor]
    block = whole[piece.start : piece.stop] if piece.blinding_axis == ROW else whole[:, piece.start : piece.stop]
    if block.shape != piece.shape:
        raise UsageError(f"{piece.name}: block of shape {block.shape}, the chunk plan says {piece.shape}")
    return block


def commit_pieces(
    quantised: dict[str, np.ndarray], pieces: list[Piece], blinding: dict[str, list[int]] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Each piece's integers with its blinding line appended, by name, and the blinding lines (the opening).
    Fresh blinding is drawn unless `blinding` is given (re-opening a commitment, or resuming a proof)."""
    committed, opening = {}, {}
    for piece in pieces:
        if blinding is not None and piece.name not in blinding:
            raise UsageError(f"the opening has no blinding line for {piece.name}")
        line = blinding[piece.name] if blinding is not None else random_blinding(piece.blinding_count)
        committed[piece.name] = with_blinding(piece_values(quantised, piece), piece, line)
        opening[piece.name] = line
    return committed, opening


def output_blinding(chunk: Chunk) -> list[int]:
    """Fresh random values for the rows appended to a chunk's partial term (its commitment then hides it)."""
    return random_blinding(chunk.shape.blinding_rows * chunk.shape.tokens)


def chunk_inputs(chunk: Chunk, committed: dict[str, np.ndarray], blinding_rows: list[int]) -> list[list[float]]:
    """What a chunk circuit takes: its committed pieces, then its output blinding rows."""
    rows = np.asarray(blinding_rows, dtype=np.int64).reshape(chunk.shape.blinding_rows, chunk.shape.tokens)
    return [as_circuit_floats(committed[p.name], INPUT_SCALE) for p in chunk.pieces] + [
        as_circuit_floats(rows, INPUT_SCALE)
    ]


def encode_inputs(partials: list[list[str]], owner: str | None) -> list[list]:
    """What the encode circuit takes: each chunk's output as EZKL's own field elements (passed as they are,
    so the commitment is recomputed over exactly the values the chunk committed), then the owner limbs."""
    return [list(p) for p in partials] + [[float(limb) for limb in owner_limbs(owner)]]
