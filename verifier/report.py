"""What a verification ends in: the one failure type every check raises, and the reports' common shape.

A check either passes or raises `CheckFailed` with the name of the check and one sentence saying what is
wrong; the first failure ends verification. `verify` reports a `Report`, `verify-inference` an
`InferenceReport` (`verifier.challenge_statistics`): both open with the same four fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from noseprint.core.errors import NoseprintError


class CheckFailed(NoseprintError):
    """A check of a bundle or of inference proofs did not pass (exit 1: the bundle or the proofs are refused)."""

    exit_code = 1

    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check, self.reason = check, reason


@dataclass
class Verdict:
    """The outcome every verification report opens with."""

    valid: bool = False
    failed_check: str | None = None
    reason: str | None = None
    checks_passed: list[str] = field(default_factory=list)

    def failed(self, failure: CheckFailed) -> None:
        self.failed_check, self.reason = failure.check, failure.reason

    def verdict_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "failed_check": self.failed_check,
            "reason": self.reason,
            "checks_passed": self.checks_passed,
        }


@dataclass
class Report(Verdict):
    """`verify`'s report on a fingerprint bundle."""

    facts: dict[str, Any] = field(default_factory=dict)
    """What verification established: proven by the proof, recomputed, or the verifier's own choice."""
    claims: dict[str, Any] = field(default_factory=dict)
    """What the owner says and nothing proves (model type, layer numbers, token strings and ids, tool
    versions): consistent with the proof's shapes, vouched for by the signature when signed, never facts."""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.verdict_dict() | {"facts": self.facts, "claims": self.claims, "warnings": self.warnings}
