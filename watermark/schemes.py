"""The two watermarking schemes: how each biases generation and what each token contributes to a detection score.

Kirchenbauer et al. 2023 ("A Watermark for Large Language Models"): the k tokens before a position and the key
pick a green list of ⌊γ|V|⌋ tokens; δ is added to their logits before sampling. A token scores 1 if green.
Under H0 (text not made with this key) each scored token is green with probability γ_eff = ⌊γ|V|⌋/|V|.

Aaronson 2022: the window and the key give r ∈ [0, 1)^|V|; the next token is argmax_v r_v^(1/p_v), which is a
sample from p when r is uniform, so the text's distribution is unchanged. A token x scores −ln(1 − r_x), which is
Exp(1) under H0 and larger when the text was chosen by these r.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.watermark.prf import WatermarkKey, green_count, green_mask, green_of, uniform_r

KIRCHENBAUER = "kirchenbauer"
AARONSON = "aaronson"
SCHEMES = (KIRCHENBAUER, AARONSON)
DEFAULT_K = 2
DEFAULT_GAMMA = 0.25
DEFAULT_DELTA = 3.0
"""The paper's defaults (Sander et al. 2024, after Kirchenbauer et al.): a window of 2, a quarter green, δ = 3."""
MAX_K = 16
WINDOW_CACHE = 4096
"""Windows whose per-token values stay in memory: a text repeats windows, and a 50k vocabulary's r is 400 kB."""


@dataclass(frozen=True)
class SchemeParams:
    """Everything besides the key that decides the watermark; recorded beside every text and in every report."""

    scheme: str
    vocab: int
    k: int = DEFAULT_K
    gamma: float = DEFAULT_GAMMA
    delta: float = DEFAULT_DELTA

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UsageError(f"unknown watermark scheme {self.scheme!r} (choose {' or '.join(SCHEMES)})")
        if not 1 <= self.k <= MAX_K:
            raise UsageError(f"the window k must be between 1 and {MAX_K}, not {self.k}")
        if self.vocab < 2:
            raise UsageError(f"the vocabulary must have at least 2 tokens, not {self.vocab}")
        if self.scheme == KIRCHENBAUER and not 0 < green_count(self.gamma, self.vocab) < self.vocab:
            raise UsageError(f"γ = {self.gamma} leaves no green or no red token in a vocabulary of {self.vocab}")
        if not math.isfinite(self.delta) or self.delta < 0:
            raise UsageError(f"δ must be a non-negative number, not {self.delta}")

    @property
    def gamma_eff(self) -> float:
        return green_count(self.gamma, self.vocab) / self.vocab

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: object, where: str) -> SchemeParams:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: the watermark parameters are not an object")
        try:
            return cls(
                str(value["scheme"]),
                int(value["vocab"]),
                int(value.get("k", DEFAULT_K)),
                float(value.get("gamma", DEFAULT_GAMMA)),
                float(value.get("delta", DEFAULT_DELTA)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{where}: malformed watermark parameters ({exc})") from None


class Watermark:
    """A key and its parameters: biases generation and scores tokens, one window at a time."""

    def __init__(self, key: WatermarkKey, params: SchemeParams):
        self.key, self.params = key, params
        self.values = lru_cache(maxsize=WINDOW_CACHE)(self._values)

    def _values(self, window: tuple[int, ...]) -> np.ndarray:
        p = self.params
        if p.scheme == KIRCHENBAUER:
            return green_mask(self.key, window, p.vocab, p.gamma)
        return uniform_r(self.key, window, p.vocab)

    def token_score(self, window: tuple[int, ...], token: int) -> float:
        """1 or 0 (green or not) for Kirchenbauer; −ln(1 − r_token) for Aaronson."""
        return float(self.token_scores(window, np.array([token]))[0])

    def token_scores(self, window: tuple[int, ...], tokens: np.ndarray) -> np.ndarray:
        """`token_score` for many tokens after one window, from one PRF stream (not cached: a scorer asks for
        each window once)."""
        p = self.params
        if p.scheme == KIRCHENBAUER:
            return green_of(self.key, window, tokens, p.vocab, p.gamma).astype(np.float64)
        return -np.log1p(-uniform_r(self.key, window, p.vocab)[np.asarray(tokens, dtype=np.int64)])

    def next_token(self, window: tuple[int, ...], logits: np.ndarray, temperature: float, uniform: float) -> int:
        """The watermarked choice from the model's next-token logits (length |V|).

        Kirchenbauer: δ on the green logits, then a sample by inverse CDF at `uniform` (the sampler's own
        randomness, not the key's). Aaronson: argmax r_v^(1/p_v), deterministic given the window."""
        values = self.values(window)
        logits = np.asarray(logits, dtype=np.float64)[: self.params.vocab]
        if self.params.scheme == KIRCHENBAUER:
            return sample(logits + self.params.delta * values, temperature, uniform)
        probs = softmax(logits / temperature)
        with np.errstate(divide="ignore"):
            return int(np.argmax(np.log(values) / probs))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def sample(logits: np.ndarray, temperature: float, uniform: float) -> int:
    """Inverse-CDF sampling at `uniform` ∈ [0, 1); temperature 0 means greedy."""
    if temperature <= 0:
        return int(np.argmax(logits))
    cdf = np.cumsum(softmax(logits / temperature))
    return int(min(np.searchsorted(cdf, uniform * cdf[-1], side="right"), len(cdf) - 1))
