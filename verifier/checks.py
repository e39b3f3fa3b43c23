"""`noseprint verify`: check a bundle without seeing a weight, trusting nothing the prover supplied.

Each check either passes (adding facts to the report) or raises `CheckFailed` with the name of the check and
one sentence saying what is wrong. What is *not* taken from the bundle: the SRS (the verifier's own), the
verification key and settings (derived from the released encoder and the circuit description), the networks
(pinned digests), the image (re-rendered from the proven z), the public values (read from the proof itself).
The checks live by subject: the bundle as files (`verifier.bundle_checks`), what the verifier derives
(`verifier.circuit_checks`), the proofs (`verifier.proof_checks`) and the picture (`verifier.image_checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import noseprint.encoder.release as release
from noseprint.circuits.budget import Budget
from noseprint.core.errors import UsageError
from noseprint.verifier.bundle_checks import (
    check_files,
    check_manifest,
    check_networks,
    check_signature,
    check_tokens,
    check_tool,
    owner_claims,
)
from noseprint.verifier.circuit_checks import check_circuit, check_hiding, check_keys, check_srs
from noseprint.verifier.context import Context
from noseprint.verifier.image_checks import check_image, check_image_proof
from noseprint.verifier.proof_checks import check_commitment, check_proof, check_public_output
from noseprint.verifier.report import CheckFailed, Report

SUBSTITUTION_NOTE = (
    "the proof shows the fingerprint was computed from the committed weights; it does not show that "
    "those weights are the model being served (open-weight models: check the commitment with the opening)"
)

CHECKS: list[tuple[str, Callable[[Context], None]]] = [
    ("manifest", check_manifest),
    ("files", check_files),
    ("signature", check_signature),
    ("tokens", check_tokens),
    ("tool", check_tool),
    ("networks", check_networks),
    ("srs", check_srs),
    ("circuit", check_circuit),
    ("keys", check_keys),
    ("hiding", check_hiding),
    ("public output", check_public_output),
    ("commitment", check_commitment),
    ("proof", check_proof),
    ("image", check_image),
    ("image proof", check_image_proof),
]


def verify_bundle(
    bundle: Path,
    srs_file: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
    generator: Path | None = None,
    signer_key: Path | None = None,
    thumbnail: Path | None = None,
    budget: Budget | None = None,
) -> Report:
    """Run every check in order; the first failure ends verification with its reason."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"bundle folder not found: {bundle}")
    if generator is not None and not (Path(generator).is_file() and Path(generator).with_suffix(".json").is_file()):
        raise UsageError(f"generator weights {generator} (and its .json config beside it) not found")
    report = Report()
    if thumbnail is not None and not (Path(thumbnail).is_file() and Path(thumbnail).with_suffix(".json").is_file()):
        raise UsageError(f"thumbnail generator {thumbnail} (and its .json config beside it) not found")
    ctx = Context(bundle, Path(srs_file) if srs_file else None, report, Path(generator or release.GENERATOR))
    ctx.thumbnail = Path(thumbnail or release.THUMBNAIL)
    ctx.budget = budget or Budget.from_env()
    if signer_key is not None:
        from noseprint.signing.keys import load_public

        ctx.signer = load_public(signer_key)
    for name, check in CHECKS:
        progress(name)
        try:
            check(ctx)
        except CheckFailed as failure:
            report.failed(failure)
            return report
        report.checks_passed.append(name)
    report.facts["tokens"] = ctx.manifest.token_count
    report.claims.update(owner_claims(ctx.manifest))
    report.warnings.append(SUBSTITUTION_NOTE)
    report.valid = True
    return report
