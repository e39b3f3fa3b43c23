"""Detection: score (window, token) pairs once each, and turn the score into a log-space p-value.

Deduplication matters: a text that repeats a phrase repeats its (window, token) pairs, and each repeat is not
independent evidence; counting them makes the null distribution wrong and gives false positives on plain text
(Fernandez et al. 2023, "Three Bricks"). So each pair is scored at most once, across all texts.

p-values, exact under H0 and computed in log space so that 10^-1000 is reported, not rounded to 0:

    Kirchenbauer   S green of N:        p = P(Bin(N, γ_eff) ≥ S)
    Aaronson       S = Σ −ln(1 − r):    p = P(Gamma(N, 1) ≥ S) = Q(N, S), upper regularised incomplete gamma
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from watermark.schemes import KIRCHENBAUER, Watermark
from watermark.texts import Text

LN10 = math.log(10)
SWITCH_LOG_P = -600.0
"""Below e^-600 scipy's logsf (computed as log of a double) loses digits and then gives -inf; the tails are then
summed term by term in log space instead (exact identities, not approximations)."""
CURVE_GROWTH = 1.25
"""The p-value curve is recorded at scored-token counts growing by this factor (and at the end)."""


def log10_binomial_tail(successes: int, trials: int, prob: float) -> float:
    """log10 P(Bin(trials, prob) ≥ successes)."""
    if successes <= 0 or trials == 0:
        return 0.0
    if successes > trials:
        return -math.inf
    value = float(stats.binom.logsf(successes - 1, trials, prob))
    if not math.isfinite(value) or value < SWITCH_LOG_P:
        ks = np.arange(successes, trials + 1)
        value = float(logsumexp(stats.binom.logpmf(ks, trials, prob)))
    return value / LN10


def log10_gamma_tail(score: float, shape: int) -> float:
    """log10 P(Gamma(shape, 1) ≥ score) = log10 P(Poisson(score) ≤ shape − 1) for integer shape."""
    if shape == 0 or score <= 0:
        return 0.0
    value = float(stats.gamma.logsf(score, a=shape))
    if not math.isfinite(value) or value < SWITCH_LOG_P:
        value = float(logsumexp(stats.poisson.logpmf(np.arange(shape), score)))
    return value / LN10


def z_score(successes: int, trials: int, prob: float) -> float:
    """Kirchenbauer's one-proportion z (a side figure: the binomial tail is the p-value)."""
    if trials == 0:
        return 0.0
    return (successes - prob * trials) / math.sqrt(trials * prob * (1 - prob))


@dataclass
class Scorer:
    """Accumulates scored pairs for one key; remembers pairs so none is counted twice (unless dedup is off)."""

    watermark: Watermark
    dedup: bool = True
    scored: int = 0
    score: float = 0.0
    seen: set[tuple[tuple[int, ...], int]] = field(default_factory=set)
    curve: list[tuple[int, float]] = field(default_factory=list)
    _next_mark: float = 1.0

    def add(self, window: tuple[int, ...], token: int) -> bool:
        """Score one pair; False when it was scored before."""
        pair = (window, token)
        if self.dedup:
            if pair in self.seen:
                return False
            self.seen.add(pair)
        self.score += self.watermark.token_score(window, token)
        self.scored += 1
        if self.scored >= self._next_mark:
            self.curve.append((self.scored, self.log10_p()))
            self._next_mark = max(self._next_mark * CURVE_GROWTH, self.scored + 1)
        return True

    def log10_p(self) -> float:
        p = self.watermark.params
        if p.scheme == KIRCHENBAUER:
            return log10_binomial_tail(round(self.score), self.scored, p.gamma_eff)
        return log10_gamma_tail(self.score, self.scored)

    def result(self) -> dict:
        """The figures every command prints and every report carries."""
        p = self.watermark.params
        curve = list(self.curve)
        if not curve or curve[-1][0] != self.scored:
            curve.append((self.scored, self.log10_p()))
        out = {
            "scheme": p.scheme,
            "scored": self.scored,
            "score": round(self.score, 6) if p.scheme != KIRCHENBAUER else int(round(self.score)),
            "log10_p": self.log10_p(),
            "dedup": self.dedup,
            "curve": [[n, lp] for n, lp in curve if n > 0],
        }
        if p.scheme == KIRCHENBAUER:
            out["gamma_eff"] = p.gamma_eff
            out["green_fraction"] = self.score / self.scored if self.scored else 0.0
            out["z"] = z_score(round(self.score), self.scored, p.gamma_eff)
        return out


def windows(context: list[int], start: int, k: int) -> Iterable[tuple[int, tuple[int, ...]]]:
    """(position, the k ids before it) for every position from `start` that has k ids before it."""
    for t in range(max(start, k), len(context)):
        yield t, tuple(context[t - k : t])


def detect(watermark: Watermark, texts: list[Text], dedup: bool = True) -> dict:
    """Score the generated tokens of every text (the prompt only supplies windows)."""
    scorer = Scorer(watermark, dedup)
    for text in texts:
        context = text.context
        for t, window in windows(context, len(text.prompt_tokens), watermark.params.k):
            scorer.add(window, context[t])
    return scorer.result()
