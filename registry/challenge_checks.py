"""Passed challenge-inference checks, recorded on the entry they speak for and shown with it.

A check is recorded only when it passed (`verifier.challenge.verify_inference`'s report is valid) and when what
it names fits the entry: the challenge is for the entry's bundle, its prompts are derived from its seed, a
registry seed is the root of *this* registry's first checkpoint that includes the entry, and the report is
about that challenge. A failed check stores nothing: the registry shows what a served model passed, and a
missing record says the rest. Both sources are kept and shown: who fixed the seed (a registry checkpoint or an
auditor) and where the answers came from (a served API or model folder someone queried, or a transcript, which
is only its maker's word: an owner can write one that agrees with the committed model).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from noseprint.core.answers import MAX_SOURCE_CHARS, answers_origin
from noseprint.core.bundle import BundleError, Manifest
from noseprint.core.challenge import Challenge, challenge_errors, is_hex
from noseprint.registry.challenge_seed import seed_record_errors
from noseprint.registry.service import Registry, Rejected, get_entry
from noseprint.registry.store import Entry, InferenceCheck, writer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def _refuse(reason: str, status: int = 422) -> Rejected:
    return Rejected(reason, "inference", status)


def _entry_vocab(entry: Entry, challenge: Challenge) -> int:
    """The bundle's inference vocabulary where its manifest states one, else the challenge's own (the verifier
    that passed the report held the challenge to the bundle)."""
    try:
        vocab = getattr(Manifest.from_json(entry.manifest_json), "inference_vocab", None)
    except BundleError:
        vocab = None
    return vocab if isinstance(vocab, int) else challenge.vocab


def challenge_fit_errors(reg: Registry, entry: Entry, challenge: Challenge) -> list[str]:
    """Why `challenge` is not a fair challenge of `entry` in this registry: empty when it is."""
    errors = challenge_errors(challenge, entry.manifest_sha256, _entry_vocab(entry, challenge))
    if errors or challenge.checkpoint is None:
        return errors
    if challenge.checkpoint.get("entry_id") != entry.id:
        return [f"the challenge's checkpoint proves entry {challenge.checkpoint.get('entry_id')}, not {entry.id}"]
    return seed_record_errors(challenge.checkpoint, entry.manifest_sha256, reg.public)


def _fraction(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def report_errors(report: dict[str, Any], challenge: Challenge) -> list[str]:
    """Why `report` (InferenceReport.to_dict()) is not a passed check of `challenge`: empty when it is."""
    if report.get("valid") is not True:
        return [f"the inference check did not pass ({report.get('failed_check')}: {report.get('reason')})"]
    if report.get("challenge_digest") != challenge.digest():
        return ["the report is about another challenge"]
    if not (_fraction(report.get("agreement")) and _fraction(report.get("threshold"))):
        return ["the report's agreement or threshold is not a fraction"]
    if report["agreement"] < report["threshold"]:
        return ["the report says valid, but its agreement is under its threshold"]
    if report.get("positions") != challenge.positions:
        return [f"the report counts {report.get('positions')} positions; the challenge has {challenge.positions}"]
    if not is_hex(report.get("proofs_digest"), 32):
        return ["the report's proofs digest is not 64 lower-case hex digits"]
    source = report.get("answers_source")
    if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE_CHARS:
        return ["the report does not say where the answers came from"]
    deviation = report.get("logprob_deviation")
    if deviation is not None and not (_finite(deviation) and 0 <= deviation <= _max_logprob_deviation()):
        return ["the report's log-probability deviation is not a number within the verifier's limit"]
    if deviation is not None and "logprobs" not in report.get("checks_passed", []):
        return ["the report gives a log-probability deviation but did not pass the log-probability check"]
    return []


def _max_logprob_deviation() -> float:
    """The verifier's own limit (not the report's word), imported when a deviation is to be judged."""
    from noseprint.verifier.challenge_statistics import MAX_LOGPROB_DEVIATION

    return MAX_LOGPROB_DEVIATION


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record_inference_check(reg: Registry, entry_id: int, challenge: Challenge, report: dict[str, Any]) -> dict:
    """Store a passed check on entry `entry_id`; `Rejected` (nothing stored) when it failed or does not fit."""
    entry = get_entry(reg, entry_id)
    problems = challenge_fit_errors(reg, entry, challenge) or report_errors(report, challenge)
    if problems:
        raise _refuse(f"not recorded: {problems[0]}")
    checkpoint = challenge.checkpoint
    row = InferenceCheck(
        entry_id=entry_id,
        challenge_digest=challenge.digest(),
        seed_source=challenge.seed_source,
        checkpoint_size=int(checkpoint["size"]) if checkpoint else None,
        agreement=float(report["agreement"]),
        threshold=float(report["threshold"]),
        positions=int(report["positions"]),
        proofs_digest=str(report["proofs_digest"]),
        logprob_deviation=None if report.get("logprob_deviation") is None else float(report["logprob_deviation"]),
        answers_source=str(report["answers_source"]),
        checked_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )
    try:
        with Session(writer(reg.engine), expire_on_commit=False) as session, session.begin():
            session.add(row)
    except IntegrityError:
        raise _refuse(f"this challenge is recorded on entry {entry_id} already", 409) from None
    return check_summary(row)


def check_summary(row: InferenceCheck) -> dict[str, Any]:
    return {
        "check_id": row.id,
        "entry_id": row.entry_id,
        "challenge_digest": row.challenge_digest,
        "seed_source": row.seed_source,
        "checkpoint_size": row.checkpoint_size,
        "agreement": row.agreement,
        "threshold": row.threshold,
        "positions": row.positions,
        "proofs_digest": row.proofs_digest,
        "logprob_deviation": row.logprob_deviation,
        "answers_source": row.answers_source,
        "answers_origin": answers_origin(row.answers_source),
        "checked_at": row.checked_at,
    }


def list_inference_checks(reg: Registry, entry_id: int) -> list[dict[str, Any]]:
    """The entry's passed checks, oldest first."""
    with Session(reg.engine) as session:
        rows = session.scalars(
            select(InferenceCheck).where(InferenceCheck.entry_id == entry_id).order_by(InferenceCheck.id)
        ).all()
        return [check_summary(row) for row in rows]
