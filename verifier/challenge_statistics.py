"""The statistics `verify-inference` holds the proven logits to (checks 6-8 of `verifier.challenge`), with the
thresholds they are held to and the report they fill.

- agreement  the proven greedy tokens against the served ones (`AGREEMENT_THRESHOLD`);
- logprobs   the served top-k log-probabilities against the proven logits, up to one temperature
             (`logprob_fit`, `MAX_LOGPROB_DEVIATION`);
- ablation   how much removing each fingerprinted layer changes the proven logits (`layer_effect`,
             `MIN_LAYER_EFFECT`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from noseprint.core.answers import Answers
from noseprint.verifier.report import CheckFailed, Verdict

MIN_LAYER_EFFECT = 0.08
"""How much removing each fingerprinted layer must change the proven logits (`layer_effect`). Measured in float
over 512 random-token positions (`python -m bench.layer_effect`): one layer of the toy LLaMA (random weights)
changes them by 0.16, of a trained zoo base or fine-tune (4 layers) by 0.30-0.68; a layer whose output factors
are zero by exactly 0. Half the weakest honest layer: an owner who makes a fingerprinted layer nearly inert
must still let it move the served model's logits by this much. On real proofs of a toy trained on a chain that
needs context (`python -m bench.trained_inference`): 0.44 and 0.55. A model that leaves a fingerprinted layer
idle (the same toy trained on a chain of the last token alone: 0.014) is refused: its fingerprint does not
describe what it serves."""
AGREEMENT_THRESHOLD = 0.75
"""The fraction of positions whose proven greedy token must equal the served one. Fixed-point and float
inference differ where two logits nearly tie: honest runs agree on 7-8 of 8 (the proven toy) and 95.5-98.2 %
(a zoo base, fixed point emulated, `python -m bench.served_agreement`); another base reaches 15-19 %, sft, cpt
and lora fine-tunes 22-47 %, but a DPO fine-tune 89-92 %: greedy tokens cannot tell it from the committed model,
so the log-probability check (below) does where answers carry them."""

MAX_LOGPROB_DEVIATION = 0.1
"""The most `logprob_deviation` a served model may show against the proven logits. Measured in float over 512
random-token positions with top-5 log-probabilities (`python -m bench.served_agreement`, the circuits' error
emulated at LAYER_ERROR 1.5e-2, which gives the proven toy's measured 1.9 % logit error): a zoo base against
itself as a proof computes it 0.061-0.069, its int8 copy 0.073-0.076, its DPO fine-tune 0.120, its 20 %-pruned
copy 0.36-0.39, its sft/cpt/lora fine-tunes 0.6-0.93, another base 0.83-0.95. The real proofs of the toy fixture
(8 positions): the committed model 0.085, every weight moved 1 % 0.108, 3 % 0.173. Fixed point at 2^-8 in the
layers is what keeps honest and DPO within 2x of each other: margins of about 1.2-1.4x each side, and a median
over few positions is noisy (honest draws at 8 positions: 0.06-0.09), so a challenge that relies on it should
have 64 positions or more."""


@dataclass
class InferenceReport(Verdict):
    """`verify-inference`'s report."""

    agreement: float | None = None
    threshold: float = AGREEMENT_THRESHOLD
    positions: int = 0
    challenge_digest: str | None = None
    proofs_digest: str | None = None
    proven_tokens: list[list[int]] = field(default_factory=list)
    link_deviation: float | None = None
    seed_source: str | None = None
    """Who fixed the challenge's randomness (an auditor's seed is only as unpredictable as its auditor)."""
    answers_source: str | None = None
    """Where the served answers came from (a transcript is its maker's word)."""
    layer_effects: dict[str, float] = field(default_factory=dict)
    """Per fingerprinted layer, how much removing it changes the proven logits (`layer_effect`)."""
    logprob_deviation: float | None = None
    """The served top-k log-probabilities against the proven logits (None: not compared, see logprobs_skipped)."""
    served_gap: float | None = None
    """The served top-k's mean gap in nats (`served_gap`): how peaked the served distribution is."""
    logprob_temperature: float | None = None
    """The fitted temperature: served nats per proven logit (about 1 for a server that returns its raw
    log-probabilities and an owner who committed the true head factor; a flattening server shows here)."""
    logprobs_skipped: str | None = None
    """Why the log-probabilities were not compared (none given), so the reader knows."""

    def to_dict(self) -> dict[str, Any]:
        return self.verdict_dict() | {
            "agreement": self.agreement,
            "threshold": self.threshold,
            "positions": self.positions,
            "challenge_digest": self.challenge_digest,
            "proofs_digest": self.proofs_digest,
            "proven_tokens": self.proven_tokens,
            "link_deviation": self.link_deviation,
            "seed_source": self.seed_source,
            "answers_source": self.answers_source,
            "layer_effects": self.layer_effects,
            "logprob_deviation": self.logprob_deviation,
            "max_logprob_deviation": MAX_LOGPROB_DEVIATION,
            "served_gap": self.served_gap,
            "logprob_temperature": self.logprob_temperature,
            "logprobs_skipped": self.logprobs_skipped,
        }


def check_agreement(report: InferenceReport, proven: list[list[int]], answers: Answers) -> None:
    """The proven greedy tokens against the served ones."""
    positions = sum(len(p) for p in proven)
    pairs = zip(proven, answers.greedy, strict=True)
    agree = sum(a == b for mine, theirs in pairs for a, b in zip(mine, theirs, strict=True))
    report.proven_tokens, report.positions = proven, positions
    report.agreement = agree / positions if positions else 0.0
    if report.agreement < AGREEMENT_THRESHOLD:
        share = f"{agree} of {positions} positions ({report.agreement:.0%} < {AGREEMENT_THRESHOLD:.0%})"
        raise CheckFailed(
            "agreement", f"the committed model agrees with the served one on {share}: it is not the model served"
        )
    report.checks_passed.append("agreement")


def check_logprobs(report: InferenceReport, logits: list[np.ndarray], answers: Answers, required: bool) -> None:
    """The served top-k log-probabilities against the proven logits, where the answers carry them, at any
    flatness (the head proofs' last rounding is at 2^-16, LOGIT_GAIN_BITS, and one temperature is fitted, so a
    server that flattens its distribution gains nothing); the report says when they were not compared.

    What the server chooses must not choose the result: a second token at some positions only would pick the
    positions compared (one gap fits a temperature exactly), top-k lists tied at every position have no gaps
    to compare, and a temperature at or below zero would score the served gaps against nothing."""
    top = None if answers.top is None else [position for prompt in answers.top for position in prompt]
    ranked = 0 if top is None else sum(len(pairs) >= 2 for pairs in top)
    if not ranked:
        missing = "carry no log-probabilities" if top is None else "carry one token per position: no gaps"
        if required:
            raise CheckFailed(
                "logprobs",
                f"the answers {missing}, and the auditor requires log-probabilities "
                "(greedy tokens alone let a light fine-tune of the committed model pass)",
            )
        report.logprobs_skipped = f"the answers {missing}"
        return
    assert top is not None
    if ranked < len(top):
        raise CheckFailed(
            "logprobs",
            f"the answers rank a second token at {ranked} of {len(top)} positions only: "
            "log-probabilities must cover every position, or none",
        )
    report.served_gap = served_gap(top)
    fit = logprob_fit(np.concatenate(logits), top)
    if fit is None or fit[1] <= 0:
        what = "tie their top-k at most positions" if fit is None else "rank tokens against the proven logits"
        raise CheckFailed(
            "logprobs", f"the served log-probabilities {what}: no temperature makes them the committed model's"
        )
    deviation, report.logprob_temperature = fit
    report.logprob_deviation = deviation
    if deviation > MAX_LOGPROB_DEVIATION:
        raise CheckFailed(
            "logprobs",
            f"the served log-probabilities differ from the committed model's logits by {deviation:.3f} (relative "
            f"to the served gaps; at most {MAX_LOGPROB_DEVIATION} allowed): the greedy tokens agree on "
            f"{report.agreement:.0%}, but the model served is another one (a fine-tune of it, or a neighbour)",
        )
    report.checks_passed.append("logprobs")


def served_gap(top: list[list[tuple[int, float]]]) -> float | None:
    """The mean gap, in nats, from the served most likely token to the others of its top-k (None: no gaps)."""
    gaps = [pairs[0][1] - logprob for pairs in top for _, logprob in pairs[1:]]
    return float(np.mean(gaps)) if gaps else None


def check_ablation(report: InferenceReport, logits: dict[int | None, list[np.ndarray]], layers: list[int]) -> None:
    """Every fingerprinted layer changes the proven logits."""
    model = np.concatenate(logits[None])
    for without in layers:
        effect = layer_effect(model, np.concatenate(logits[without]))
        report.layer_effects[str(without)] = effect
        if effect < MIN_LAYER_EFFECT:
            raise CheckFailed(
                "ablation",
                f"without layer {without} the committed model's logits change by {effect:.3f} (median relative "
                f"change; at least {MIN_LAYER_EFFECT} needed): a fingerprinted layer that does nothing can carry "
                "any fingerprint, so this one does not describe the model served",
            )
    report.checks_passed.append("ablation")


def layer_effect(model: np.ndarray, without: np.ndarray) -> float:
    """How much removing a layer changes the proven logits: the median over positions of |without - model|
    relative to the spread of the model's logits at that position (0 for a layer that does nothing)."""
    spread = np.linalg.norm(model - model.mean(axis=1, keepdims=True), axis=1)
    change = np.linalg.norm(without - model, axis=1)
    relative = np.where(spread > 0, change / np.where(spread > 0, spread, 1.0), 0.0)
    return float(np.median(relative))


def logprob_deviation(proven: np.ndarray, top: list[list[tuple[int, float]]]) -> float | None:
    """`logprob_fit`'s deviation alone (None: nothing to compare)."""
    fit = logprob_fit(proven, top)
    return None if fit is None else fit[0]


def logprob_fit(proven: np.ndarray, top: list[list[tuple[int, float]]]) -> tuple[float, float] | None:
    """How far the proven logits (positions x vocabulary) are from the served top-k log-probabilities, relative
    to the served model's own gaps (0: the same up to a temperature; about 1: unrelated).

    At each position, the gaps from the served most likely token to the others of its top-k: served,
    log-probability differences; proven, logit differences (the same quantity: a softmax's normaliser cancels).
    One temperature is fitted over all positions first (the head's committed factor is the owner's word, so a
    temperature must not decide). The result is the median over positions of the mean |fitted proven gap -
    served gap|, divided by the median over positions of the mean served gap (one normaliser, so that a near tie
    does not blow up its position and a model's overall logit scale does not matter; the same statistic as the
    numerator, so that a server cannot make a few positions' huge gaps stand for the rest). Returned with the
    fitted temperature (served nats per proven logit; not clamped: at or below zero the served ranking is
    against the proven one). None where no position has two tokens in its top-k, or the normaliser is zero."""
    proven_gaps, served_gaps = [], []
    for row, pairs in zip(proven, top, strict=True):
        anchor, anchor_logprob = pairs[0]
        proven_gaps.append(np.array([row[anchor] - row[token] for token, _ in pairs[1:]], dtype=np.float64))
        served_gaps.append(np.array([anchor_logprob - logprob for _, logprob in pairs[1:]], dtype=np.float64))
    scored = [(p, s) for p, s in zip(proven_gaps, served_gaps, strict=True) if len(s)]
    scale = float(np.median([s.mean() for _, s in scored])) if scored else 0.0
    if scale <= 0:
        return None
    energy = sum(float(p @ p) for p, _ in scored)
    temperature = sum(float(p @ s) for p, s in scored) / energy if energy > 0 else 0.0
    deviation = float(np.median([np.abs(temperature * p - s).mean() for p, s in scored])) / scale
    return deviation, temperature
