"""The one verdict on a pair of fingerprints, with thresholds calibrated on the model zoo.

Calibrated by `python -m bench.zoo.evaluate` (BENCHMARKS.md "Lineage on the model zoo"): 66 models
(bases pretrained 2,400 steps), 481 derived and 1,664 independent pairs at 16 tokens. "unrelated" at or
below the largest independent similarity + 0.05, "same base model" at or above the smallest derived
similarity - 0.05, "unsure" between; where the zoo saw derived and independent pairs overlap, the overlap
would be "unsure". ICS (HuRef's invariant cosine similarity) decides when both sides have their
invariants; otherwise z-cosine (what a bundle and the registry have).
"""

from __future__ import annotations

SAME = "same base model"
UNRELATED = "unrelated"
UNSURE = "unsure"

ICS_SAME, ICS_UNRELATED = 0.79, 0.21  # canonical form, converged zoo: derived ICS >= 0.843, independent <= 0.156
Z_SAME, Z_UNRELATED = 0.78, 0.28  # the same, released 128-wide projection: derived >= 0.833, independent <= 0.233


def _band(similarity: float, same: float, unrelated: float) -> str:
    return SAME if similarity >= same else UNRELATED if similarity <= unrelated else UNSURE


def verdict(ics: float | None, z_cosine: float) -> str:
    """ICS when both invariants are at hand, else z-cosine."""
    if ics is not None:
        return _band(ics, ICS_SAME, ICS_UNRELATED)
    return _band(z_cosine, Z_SAME, Z_UNRELATED)
