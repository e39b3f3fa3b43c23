"""Checking a signed report, and recomputing its score once the owner reveals a retired key."""

from __future__ import annotations

import math
from pathlib import Path

import noseprint.watermark.radioactive as radioactive
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from noseprint.core.errors import UsageError
from noseprint.core.fileio import sha256_file
from noseprint.watermark.detect import detect
from noseprint.watermark.prf import load_key
from noseprint.watermark.report import ReportError, check_revealed_key, verify_signed
from noseprint.watermark.schemes import SchemeParams, Watermark
from noseprint.watermark.texts import Text, read_texts

SCORE_TOLERANCE = 1e-6
"""Aaronson scores are sums of floats, rounded to 6 decimals in the report."""


def check_report(
    signed: Path, required: Ed25519PublicKey | None, reveal: Path | None = None, texts: Path | None = None
) -> dict:
    """Verify the signature; with `reveal`, the key commitment, and recompute the score where the report and
    `texts` allow: a detect report from its texts; an open radioactivity report from the watermarked texts and
    the suspect's recorded predictions; a closed one from its recorded answers (and the filter's texts)."""
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
    kind = report.get("kind")
    closed_unfiltered = kind == "radioactive-closed" and report["result"].get("filter", "none") == "none"
    if texts is not None or closed_unfiltered:
        summary["recomputed"] = recompute(report, key, texts)
    return summary


def _texts_named(report: dict, subject: str, texts: Path | None) -> list[Text]:
    if texts is None:
        raise UsageError(f"recomputing this report needs the file it names as {subject!r} (--texts)")
    if report["subjects"].get(subject) != sha256_file(texts):
        raise ReportError(f"these texts are not the ones the report names as {subject!r} (SHA-256 differs)")
    return read_texts(texts)


def _record(report: dict, name: str) -> list:
    value = report.get("record", {}).get(name) if isinstance(report.get("record"), dict) else None
    if not isinstance(value, list):
        raise UsageError(f"this report records no {name} to recompute its score from (made by an older version)")
    return value


def recompute(report: dict, key, texts: Path | None) -> dict:
    """The report's score recomputed from the revealed key; a mismatch with the signed figures is a ReportError."""
    params = SchemeParams.from_json(report.get("params"), "the report's parameters")
    watermark = Watermark(key, params)
    stated = report["result"]
    dedup = bool(stated.get("dedup", True))
    kind = report.get("kind")
    if kind == "detect":
        result = detect(watermark, _texts_named(report, "texts", texts), dedup)
    elif kind == "radioactive-open":
        reference = _texts_named(report, "texts", texts)
        recorded = _record(report, "predictions")
        predicted = [np.asarray(_ids(p, "a recorded prediction"), dtype=np.int64) for p in recorded]
        if len(predicted) != len(reference) or any(
            len(p) > len(t.context) for p, t in zip(predicted, reference, strict=False)
        ):
            raise ReportError("the recorded predictions do not fit these texts (one list a text, none longer)")
        result = radioactive.score_reading(watermark, reference, predicted, dedup)
    elif kind == "radioactive-closed":
        answers = [_answer(a) for a in _record(report, "answers")]
        phi = _filter(report, params.k, texts)
        result = radioactive.closed_mode(watermark, answers, phi, dedup)
    else:
        raise UsageError(f"a {kind!r} report cannot be recomputed")
    if result["scored"] != stated.get("scored") or not math.isclose(
        float(result["score"]), float(stated.get("score", math.nan)), abs_tol=SCORE_TOLERANCE
    ):
        raise ReportError(
            f"the recomputed score ({result['scored']} tokens, {result['score']}) is not the report's "
            f"({stated.get('scored')} tokens, {stated.get('score')})"
        )
    return {"scored": result["scored"], "score": result["score"], "log10_p": result["log10_p"]}


def _ids(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise ReportError(f"{what} is not a list of token ids")
    return value


def _answer(value: object) -> Text:
    if not isinstance(value, dict):
        raise ReportError("a recorded answer is not an object")
    return Text(_ids(value.get("prompt_tokens"), "a recorded prompt"), _ids(value.get("tokens"), "a recorded answer"))


def _filter(report: dict, k: int, texts: Path | None) -> set[tuple[int, ...]] | None:
    kind = report["result"].get("filter", "none")
    if kind == "none":
        return None
    reference = _texts_named(report, "filter-texts", texts)
    if kind == "supervised":
        return radioactive.supervised_filter(reference, k)
    if kind == "unsupervised":
        top = report["result"].get("filter_top")
        if not isinstance(top, int):
            raise UsageError("this report does not record its unsupervised filter's size (made by an older version)")
        return radioactive.unsupervised_filter(reference, k, top)
    raise ReportError(f"unknown filter {kind!r} in the report")
