"""`noseprint compare A B`: how alike two fingerprints are, and a verdict.

A and B may each be a model folder (fingerprinted on the fly), a fingerprint folder
(`noseprint fingerprint`) or a bundle. z-cosine is always available; the invariant
cosine similarity (ICS, HuRef's measure) only when both sides have their private
invariants (model or fingerprint folders).

The verdict thresholds are calibrated on the model zoo (`python -m bench.zoo.evaluate`,
BENCHMARKS.md "Lineage on the model zoo"): 66 models (bases pretrained 2,400 steps), 481 derived and
1,664 independent pairs at 16 tokens. "unrelated" at or below the largest independent similarity + 0.05,
"same base model" at or above the smallest derived similarity - 0.05, "unsure" between;
where the zoo saw derived and independent pairs overlap, the overlap would be "unsure".
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoder.zvector import as_floats, cosine
from noseprint.errors import UsageError
from prover.invariants import invariant_cosine
from registry.gallery import grid

ICS_SAME, ICS_UNRELATED = 0.81, 0.17  # converged zoo: derived ICS >= 0.864, independent <= 0.125
Z_SAME, Z_UNRELATED = 0.80, 0.26  # converged zoo, released 128-wide projection: derived >= 0.852, independent <= 0.206


@dataclass
class Fingerprint:
    label: str
    z: list[int]
    image: Path
    invariants: np.ndarray | None


def token_count(source: Path) -> int | None:
    """How many tokens a bundle or fingerprint folder used (None for a model folder)."""
    tokens = Path(source) / "tokens.json"
    if tokens.is_file() and not (Path(source) / "config.json").is_file():
        return len(json.loads(tokens.read_text())["tokens"])
    return None


def load(source: Path, workdir: Path, tokens: int = 16) -> Fingerprint:
    source = Path(source)
    if (source / "manifest.json").is_file():
        manifest = json.loads((source / "manifest.json").read_text())
        z = json.loads((source / manifest["z"]["file"]).read_text())["z"]
        return Fingerprint(source.name, [int(v) for v in z], source / manifest["image"]["file"], None)
    if (source / "fingerprint.json").is_file():
        record = json.loads((source / "fingerprint.json").read_text())
        invariants = np.load(source / "invariants.npy") if (source / "invariants.npy").is_file() else None
        return Fingerprint(source.name, record["z"], source / "fingerprint.png", invariants)
    if (source / "config.json").is_file():
        from prover.fingerprint import fingerprint_model

        target = workdir / f"fp-{len(list(workdir.iterdir()))}"
        fingerprint_model(source, target, token_count=tokens)
        fingerprint = load(target, workdir)
        fingerprint.label = source.name
        return fingerprint
    raise UsageError(f"{source} is neither a bundle, a fingerprint folder nor a model folder")


def verdict(ics: float | None, z_cosine: float) -> str:
    if ics is not None:
        return "same base model" if ics >= ICS_SAME else "unrelated" if ics <= ICS_UNRELATED else "unsure"
    return "same base model" if z_cosine >= Z_SAME else "unrelated" if z_cosine <= Z_UNRELATED else "unsure"


def compare(a: Path, b: Path, image_out: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="noseprint-compare-") as tmp:
        count = token_count(a) or token_count(b) or 16  # a model side follows the other side's tokens
        left, right = load(a, Path(tmp), count), load(b, Path(tmp), count)
        if len(left.z) != len(right.z):
            raise UsageError("the two fingerprints come from different encoders (z dimensions differ)")
        z_cos = cosine(as_floats(left.z), as_floats(right.z))
        ics = None
        if left.invariants is not None and right.invariants is not None:
            if left.invariants.shape != right.invariants.shape:
                raise UsageError("the invariants have different shapes (token counts differ)")
            ics = invariant_cosine(left.invariants, right.invariants)
        result = {"a": str(a), "b": str(b), "z_cosine": z_cos, "ics": ics, "verdict": verdict(ics, z_cos)}
        if image_out is not None:
            ics_text = "n/a" if ics is None else f"{ics:.3f}"
            caption = f"z-cosine {z_cos:.3f}   ICS {ics_text}   verdict: {result['verdict']}"
            grid([(left.label, left.image), (right.label, right.image)], Path(image_out), caption=caption, size=256)
            result["image"] = str(image_out)
    return result
