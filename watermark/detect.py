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
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from noseprint.watermark.schemes import KIRCHENBAUER, SchemeParams, Watermark
from noseprint.watermark.texts import Text
from scipy import stats
from scipy.special import logsumexp

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


Pair = tuple[tuple[int, ...], int]
"""A scored (window, token) pair: the k ids before a position and the token chosen there."""


def log10_p_of(params: SchemeParams, score: float, scored: int) -> float:
    if params.scheme == KIRCHENBAUER:
        return log10_binomial_tail(round(score), scored, params.gamma_eff)
    return log10_gamma_tail(score, scored)


def first_occurrences(pairs: list[Pair]) -> np.ndarray:
    """A mask keeping each distinct pair the first time it occurs."""
    seen: set[Pair] = set()
    keep = np.zeros(len(pairs), dtype=bool)
    for i, pair in enumerate(pairs):
        if pair not in seen:
            seen.add(pair)
            keep[i] = True
    return keep


def pair_scores(watermark: Watermark, pairs: list[Pair]) -> np.ndarray:
    """Each pair's score, computed window by window: one PRF stream per distinct window, for all its tokens."""
    by_window: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (window, _) in enumerate(pairs):
        by_window[window].append(i)
    tokens = np.fromiter((token for _, token in pairs), dtype=np.int64, count=len(pairs))
    scores = np.empty(len(pairs), dtype=np.float64)
    for window, rows in by_window.items():
        index = np.asarray(rows)
        scores[index] = watermark.token_scores(window, tokens[index])
    return scores


def curve_marks(scored: int) -> list[int]:
    """Scored-token counts at which the curve is recorded: 1, then growing by CURVE_GROWTH, and the end."""
    marks, mark = [], 1.0
    while (n := math.ceil(mark)) <= scored:
        marks.append(n)
        mark = max(mark * CURVE_GROWTH, n + 1)
    if not marks or marks[-1] != scored:
        marks.append(scored)
    return [n for n in marks if n > 0]


def summarise(params: SchemeParams, scores: np.ndarray, dedup: bool, curve: bool = True) -> dict:
    """The figures every command prints and every report carries, from the scored pairs' scores in order."""
    scored = len(scores)
    cumulative = np.cumsum(scores)
    total = float(cumulative[-1]) if scored else 0.0  # the curve's last point is the figure itself
    out = {
        "scheme": params.scheme,
        "scored": scored,
        "score": round(total, 6) if params.scheme != KIRCHENBAUER else int(round(total)),
        "log10_p": log10_p_of(params, total, scored),
        "dedup": dedup,
        "curve": [[n, log10_p_of(params, float(cumulative[n - 1]), n)] for n in curve_marks(scored)] if curve else [],
    }
    if params.scheme == KIRCHENBAUER:
        out["gamma_eff"] = params.gamma_eff
        out["green_fraction"] = total / scored if scored else 0.0
        out["z"] = z_score(round(total), scored, params.gamma_eff)
    return out


def score_pairs(watermark: Watermark, pairs: list[Pair], dedup: bool = True, curve: bool = True) -> dict:
    """Score pairs in order; with dedup, each distinct pair counts once (its first occurrence)."""
    if dedup:
        keep = first_occurrences(pairs)
        pairs = [pair for pair, kept in zip(pairs, keep, strict=True) if kept]
    return summarise(watermark.params, pair_scores(watermark, pairs), dedup, curve)


@dataclass
class Scorer:
    """Collects pairs for one key, each at most once unless dedup is off; scores them all at `result()`."""

    watermark: Watermark
    dedup: bool = True
    pairs: list[Pair] = field(default_factory=list)
    seen: set[Pair] = field(default_factory=set)

    def add(self, window: tuple[int, ...], token: int) -> bool:
        """Take one pair; False when it was taken before."""
        pair = (window, token)
        if self.dedup:
            if pair in self.seen:
                return False
            self.seen.add(pair)
        self.pairs.append(pair)
        return True

    @property
    def scored(self) -> int:
        return len(self.pairs)

    def result(self) -> dict:
        return summarise(self.watermark.params, pair_scores(self.watermark, self.pairs), self.dedup)


def windows(context: list[int], start: int, k: int) -> Iterable[tuple[int, tuple[int, ...]]]:
    """(position, the k ids before it) for every position from `start` that has k ids before it."""
    for t in range(max(start, k), len(context)):
        yield t, tuple(context[t - k : t])


def detect(watermark: Watermark, texts: list[Text], dedup: bool = True) -> dict:
    """Score the generated tokens of every text (the prompt only supplies windows)."""
    pairs: list[Pair] = []
    for text in texts:
        context = text.context
        pairs.extend(
            (window, context[t]) for t, window in windows(context, len(text.prompt_tokens), watermark.params.k)
        )
    return score_pairs(watermark, pairs, dedup)
