"""The public statement a fingerprint proof makes, and how its public outputs are laid out.

The circuit's public outputs, in this order (one instance column, read from the proof):

    z_raw   the encoder's output, `z_dim` integers                  -> z (verify standardises it)
    peaks   max |term / 2^shift| of each invariant term, at the    -> the shifts are the minimal ones:
            peak output scale                                          z depends on the weights alone
    owner   the owner's key id (SHA-256 of the Ed25519 public key)  -> only that key's signature is
            as OWNER_LIMBS limbs of OWNER_LIMB_BITS bits; all zero     accepted, so a copied bundle
            when the bundle binds no owner                             cannot be re-signed by another

Why the peaks: each raw term is divided by a power of two before standardisation, to keep EZKL's
fixed-point values in range. Standardisation makes the result independent of the divisor in exact
arithmetic but not in fixed point, so a free divisor would let an owner grind z (cosine 0.994 apart,
pictures visibly different). The circuit outputs each shifted term's peak, and the verifier accepts a
shift only if it is the smallest that brings the peak to at most 2^TERM_PEAK_BITS:
2^(TERM_PEAK_BITS-1) < peak <= 2^TERM_PEAK_BITS, or shift 0 and peak <= 2^TERM_PEAK_BITS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TERM_PEAK_BITS = 4
"""After its shift, a term's largest magnitude is at most 2^TERM_PEAK_BITS (and above half that)."""

OWNER_LIMBS = 16
OWNER_LIMB_BITS = 16
KEYID_HEX_DIGITS = OWNER_LIMBS * OWNER_LIMB_BITS // 4


def owner_limbs(keyid: str | None) -> list[int]:
    """A key id (64 hex digits) as big-endian 16-bit limbs; no owner is all zeros."""
    if keyid is None:
        return [0] * OWNER_LIMBS
    if len(keyid) != KEYID_HEX_DIGITS:
        raise ValueError(f"a key id has {KEYID_HEX_DIGITS} hex digits")
    width = OWNER_LIMB_BITS // 4
    return [int(keyid[i : i + width], 16) for i in range(0, KEYID_HEX_DIGITS, width)]


def keyid_of_limbs(limbs: list[int]) -> str | None:
    """The inverse of `owner_limbs`; ValueError for limbs no key id gives."""
    if len(limbs) != OWNER_LIMBS or any(not 0 <= limb < 1 << OWNER_LIMB_BITS for limb in limbs):
        raise ValueError("the owner limbs are not a key id")
    if not any(limbs):
        return None
    return "".join(f"{limb:0{OWNER_LIMB_BITS // 4}x}" for limb in limbs)


def shift_for_peak(peak: float) -> int:
    """The smallest power-of-two divisor that brings a term whose largest magnitude is `peak` to at most
    2^TERM_PEAK_BITS."""
    return max(0, math.ceil(math.log2(peak)) - TERM_PEAK_BITS) if peak > 0 else 0


def shift_is_minimal(peak: float, shift: int) -> bool:
    """Is `shift` the smallest power-of-two divisor that brings the term's peak to at most 2^TERM_PEAK_BITS?"""
    top = float(1 << TERM_PEAK_BITS)
    return peak <= top and (shift == 0 or peak > top / 2)


@dataclass(frozen=True)
class PublicOutputs:
    """The proof's public outputs, split and decoded."""

    z_raw: list[int]
    peaks: list[float]
    owner: str | None


def split_outputs(values: list[int], z_dim: int, terms: int, peak_scale: int, owner_scale: int) -> PublicOutputs:
    """Decode the instance integers; ValueError if their number or the owner limbs are wrong."""
    if len(values) != z_dim + terms + OWNER_LIMBS:
        raise ValueError(f"{len(values)} public outputs, not {z_dim} + {terms} + {OWNER_LIMBS}")
    z_raw = values[:z_dim]
    peaks = [v / (1 << peak_scale) for v in values[z_dim : z_dim + terms]]
    scaled = values[z_dim + terms :]
    unit = 1 << owner_scale
    if any(v % unit for v in scaled):
        raise ValueError("the owner limbs are not whole numbers")
    return PublicOutputs(z_raw, peaks, keyid_of_limbs([v // unit for v in scaled]))
