"""Signed detection reports: the evidence an owner files (`registry evidence`) that a suspect carries its watermark.

A report is JSON: what was tested (kind, mode, parameters), the key's salted commitment (never the key), SHA-256
digests of the suspect model and of the texts, the number of scored tokens, the score, log10 p and its curve, and
(version 2) the commitment digest of the registered model it speaks for (`model_commitment`, or null): the
registry attaches a report to that entry only, so whoever files a report cannot pick which of its signer's
entries it speaks for (a version 1 report, which names none, is refused as evidence).
It is signed like a bundle, as an in-toto Statement v1 in a DSSE envelope, with its own predicate type:

    subject        the suspect (model digest or transcript digest) and each text file, by SHA-256
    predicateType  PREDICATE_TYPE
    predicate      the report

The signed file holds the envelope and the signer's public key; whoever checks it chooses which signer to accept
(the registry: the registered model's owner). Revealing a retired key (its JSON, with the salt) lets anyone check
it against the commitment and recompute the score from the same texts (`check_revealed_key`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import noseprint.signing.dsse as dsse
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from noseprint.core.errors import NoseprintError, UsageError
from noseprint.core.fileio import canonical_json, sha256_bytes, sha256_file, write_bytes_atomic
from noseprint.signing.attestation import STATEMENT_TYPE
from noseprint.signing.keys import key_id, parse_public, public_pem
from noseprint.watermark.prf import WatermarkKey

PREDICATE_TYPE = "https://noseprint.dev/attestation/radioactivity/v1"
REPORT_VERSION = 2
"""2: `model_commitment` names the registered model the report speaks for (issue 33)."""
SIGNED_FORMAT = "noseprint-signed-report/v1"
MODEL_FILES = ("config.json", "*.safetensors")


class ReportError(NoseprintError):
    """A signed report is malformed, its signature does not verify, or its statement is inconsistent."""


def model_digest(folder: Path) -> str:
    """SHA-256 of the canonical JSON {file name: SHA-256} of the config and weight files: the suspect's identity."""
    folder = Path(folder)
    files = sorted({p for pattern in MODEL_FILES for p in folder.glob(pattern) if p.is_file()})
    return sha256_bytes(canonical_json({p.name: sha256_file(p) for p in files}))


def finite(value: object) -> object:
    """JSON has no infinities: a p-value of exactly 0 (log10 −inf) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def build_report(
    kind: str,
    key: WatermarkKey,
    params: dict,
    result: dict,
    subjects: dict[str, str],
    record: dict | None = None,
    model_commitment: str | None = None,
) -> dict:
    """The report; `subjects` maps a name (suspect, texts, …) to a SHA-256; `record` (radioactivity reports) holds
    what the suspect did: its argmax predictions over each text (open) or its answers' token ids (closed);
    `model_commitment` the commitment digest of the registered model the report is evidence for."""
    body = {
        "version": REPORT_VERSION,
        "kind": kind,
        "model_commitment": model_commitment,
        "key_commitment": key.commitment,
        "params": params,
        "subjects": dict(sorted(subjects.items())),
        "result": result,
    }
    if record:
        body["record"] = record
    return finite(body)  # type: ignore[return-value]


def statement_for(report: dict) -> dict:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in report["subjects"].items()],
        "predicateType": PREDICATE_TYPE,
        "predicate": report,
    }


def sign_report(report: dict, private: Ed25519PrivateKey) -> dict:
    envelope = dsse.sign(canonical_json(statement_for(report)), dsse.IN_TOTO_PAYLOAD_TYPE, private)
    return {"format": SIGNED_FORMAT, "envelope": envelope, "signer_pub": public_pem(private.public_key()).decode()}


def write_signed(path: Path, signed: dict, force: bool = False) -> None:
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to replace it)")
    write_bytes_atomic(path, (json.dumps(signed, indent=2) + "\n").encode())


def verify_signed(data: bytes, required: Ed25519PublicKey | None = None) -> tuple[str, dict]:
    """(signer key id, report) of a signed report whose signature and statement check; else ReportError.

    Without `required`, the bundled public key is used: that shows integrity and names the key, not who it is."""
    try:
        signed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"the signed report is not JSON ({exc})") from None
    if not isinstance(signed, dict) or signed.get("format") != SIGNED_FORMAT:
        raise ReportError(f"not a signed noseprint report (format {SIGNED_FORMAT})")
    try:
        public = required or parse_public(str(signed.get("signer_pub", "")).encode(), "the report's signer_pub")
        payload_type, payload = dsse.verify(signed.get("envelope"), public)
    except (UsageError, dsse.EnvelopeError) as exc:
        raise ReportError(str(exc)) from None
    if payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise ReportError(f"the envelope carries {payload_type!r}, not an in-toto statement")
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ReportError("the signed payload is not JSON") from None
    if not isinstance(statement, dict) or statement.get("predicateType") != PREDICATE_TYPE:
        raise ReportError("the signed statement is not a noseprint radioactivity report")
    report = statement.get("predicate")
    if not isinstance(report, dict) or not isinstance(report.get("subjects"), dict):
        raise ReportError("the signed report has no subjects")
    if statement != statement_for(report):
        raise ReportError("the statement's subjects are not the report's")
    return key_id(public), report


def check_revealed_key(report: dict, key: WatermarkKey) -> None:
    """A revealed key must be the one the report committed to."""
    if report.get("key_commitment") != key.commitment:
        raise ReportError("the revealed key does not open the report's key commitment")
