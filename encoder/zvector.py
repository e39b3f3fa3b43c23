"""From the proof's public output to z, exactly, in integers.

The circuit outputs the encoder's raw vector as fixed-point integers. z is its
standardisation (HuRef standardises the encoder output too). That is a public
function of public values, so it is computed outside the circuit, in exact integer
arithmetic: every machine gets the same z bit for bit, hence the same picture.
"""

from __future__ import annotations

from math import isqrt

Z_FRAC_BITS = 12
"""z is represented as integers scaled by 2^12."""


def standardise_exact(raw: list[int]) -> list[int]:
    """round-down of (x - mean) / std · 2^12, computed with integers only."""
    n = len(raw)
    if n < 2:
        raise ValueError("z needs at least two components")
    centred = [n * x - sum(raw) for x in raw]  # n·(x - mean)
    energy = sum(c * c for c in centred)  # n²·Σ(x - mean)² = n³·var
    if energy == 0:
        return [0] * n
    # std·n = sqrt(energy / n); z = c / (std·n)
    denom = isqrt((energy << 64) // n)  # ≈ std·n·2^32
    return [(c << (Z_FRAC_BITS + 32)) // denom for c in centred]


def as_floats(z: list[int]) -> list[float]:
    return [v / (1 << Z_FRAC_BITS) for v in z]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0
