"""Checking a signed report, and recomputing its score once the owner reveals a retired key."""

from __future__ import annotations

import math
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.errors import UsageError
from core.fileio import sha256_file
from watermark.detect import detect
from watermark.prf import load_key
from watermark.report import ReportError, check_revealed_key, verify_signed
from watermark.schemes import SchemeParams, Watermark
from watermark.texts import read_texts

SCORE_TOLERANCE = 1e-6
"""Aaronson scores are sums of floats, rounded to 6 decimals in the report."""


def check_report(
    signed: Path, required: Ed25519PublicKey | None, reveal: Path | None = None, texts: Path | None = None
) -> dict:
    """Verify the signature; with `reveal`, the key commitment; with `texts` too, recompute a detect report."""
    try:
        data = Path(signed).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"signed report not found: {signed}") from None
    keyid, report = verify_signed(data, required)
    summary: dict = {"valid": True, "signer_keyid": keyid, "signer_demanded": required is not None, "report": report}
    if reveal is None:
        if texts is not None:
            raise UsageError("recomputing a report needs the revealed key (--reveal)")
        return summary
    key = load_key(reveal)
    check_revealed_key(report, key)
    summary["key_opens_commitment"] = True
    if texts is not None:
        summary["recomputed"] = recompute_detect(report, key, texts)
    return summary


def recompute_detect(report: dict, key, texts: Path) -> dict:
    if report.get("kind") != "detect":
        raise UsageError("only a detect report is recomputed from texts (a radioactivity report needs the suspect)")
    if report["subjects"].get("texts") != sha256_file(texts):
        raise ReportError("these texts are not the ones the report names (SHA-256 differs)")
    params = SchemeParams.from_json(report.get("params"), "the report's parameters")
    result = detect(Watermark(key, params), read_texts(texts), bool(report["result"].get("dedup", True)))
    stated = report["result"]
    if result["scored"] != stated.get("scored") or not math.isclose(
        float(result["score"]), float(stated.get("score", math.nan)), abs_tol=SCORE_TOLERANCE
    ):
        raise ReportError(
            f"the recomputed score ({result['scored']} tokens, {result['score']}) is not the report's "
            f"({stated.get('scored')} tokens, {stated.get('score')})"
        )
    return {"scored": result["scored"], "score": result["score"], "log10_p": result["log10_p"]}
