"""`noseprint compare A B`: how alike two fingerprints are, and a verdict (`lineage/verdict.py`).

A and B may each be a model folder (fingerprinted on the fly), a fingerprint folder
(`noseprint fingerprint`) or a bundle (`core/sources.py` says which). z-cosine is always available;
the invariant cosine similarity (ICS, HuRef's measure) only when both sides have their private
invariants (model or fingerprint folders).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from noseprint.core.bundle import Bundle
from noseprint.core.errors import UsageError
from noseprint.core.fingerprint_folder import read_folder
from noseprint.core.sources import SourceKind, source_kind, tokens_file
from noseprint.core.tokens import TokenList
from noseprint.encoder.zvector import as_floats, cosine
from noseprint.lineage.fingerprint import fingerprint_model
from noseprint.lineage.gallery import grid
from noseprint.lineage.verdict import verdict
from noseprint.models.invariants import invariant_cosine
from noseprint.models.weights import DEFAULT_TOKENS


@dataclass
class Fingerprint:
    label: str
    z: list[int]
    image: Path
    invariants: np.ndarray | None


def token_list(source: Path) -> TokenList | None:
    """The tokens a bundle or fingerprint folder used (None for a model folder: the rule picks its tokens)."""
    found = tokens_file(source)
    if found is None:
        return None
    try:
        return TokenList.from_json(found.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{found} is unreadable ({exc})") from None


def require_rule_tokens(source: Path) -> None:
    """Fingerprints are comparable only at the token rule's tokens: the same weights at other tokens, or the
    same tokens in another order, give another z (`core.tokens`)."""
    listed = token_list(source)
    problem = None if listed is None else listed.rule_error()
    if problem is not None:
        raise UsageError(f"{source} is not comparable: {problem}")


def load(source: Path, workdir: Path, tokens: int = DEFAULT_TOKENS) -> Fingerprint:
    """z, picture and (where there are any) invariants of any kind of source, taken at the rule's tokens."""
    source = Path(source)
    kind = source_kind(source)
    if kind is not SourceKind.MODEL:
        require_rule_tokens(source)
    if kind is SourceKind.BUNDLE:
        bundle = Bundle.open(source)
        return Fingerprint(source.name, bundle.z(), bundle.picture, None)
    if kind is SourceKind.FINGERPRINT:
        folder = read_folder(source)
        return Fingerprint(source.name, folder.record.z, folder.picture, folder.invariants())
    target = workdir / f"fp-{len(list(workdir.iterdir()))}"
    fingerprint_model(source, target, token_count=tokens)
    fingerprint = load(target, workdir)
    fingerprint.label = source.name
    return fingerprint


def _count(source: Path) -> int | None:
    listed = token_list(source)
    return None if listed is None else len(listed)


def compare(a: Path, b: Path, image_out: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="noseprint-compare-") as tmp:
        count = _count(a) or _count(b) or DEFAULT_TOKENS  # a model side follows the other side's token count
        left, right = load(a, Path(tmp), count), load(b, Path(tmp), count)
        if len(left.z) != len(right.z):
            raise UsageError("the two fingerprints come from different encoders (z dimensions differ)")
        z_cos = cosine(as_floats(left.z), as_floats(right.z))
        ics = None
        if left.invariants is not None and right.invariants is not None:
            if left.invariants.shape != right.invariants.shape:
                raise UsageError("the invariants have different shapes (token counts differ)")
            ics = invariant_cosine(left.invariants, right.invariants)
        result: dict[str, Any] = {"a": str(a), "b": str(b), "z_cosine": z_cos, "ics": ics}
        result["verdict"] = verdict(ics, z_cos)
        if image_out is not None:
            ics_text = "n/a" if ics is None else f"{ics:.3f}"
            caption = f"z-cosine {z_cos:.3f}   ICS {ics_text}   verdict: {result['verdict']}"
            grid([(left.label, left.image), (right.label, right.image)], Path(image_out), caption=caption, size=256)
            result["image"] = str(image_out)
    return result
