"""The fingerprint's invariant terms, computed directly in float64: the reference the circuit must match.

The canonical form (docs/invariants.md has the argument for each term). For layer weights in the
`nn.Linear` (out, in) convention, E the embedding rows of the selected tokens (centred per row for
LayerNorm models, `canonical_embedding`), γa and γf the scales of the norms the attention and the FFN read:

    QK  = (E·γa·Wqᵀ)·(E·γa·Wkᵀ)ᵀ                 (K heads repeated to the query heads for GQA)
    VO  = (E·γa·Wvᵀ)·(E·Wo)ᵀ                      (V heads repeated likewise)
    FFN = (E·γf·W1ᵀ)·(E·W2)ᵀ                      plain FFN
    FFN = ((E·γf·Wgateᵀ) ⊙ (E·γf·Wupᵀ))·(E·Wdown)ᵀ  gated FFN (the product is over the n x ffn activations)

Readers carry the norm scale, writers do not, so folding γ into the readers changes nothing; each
reader's E·R meets a writer's or another reader's Rᵀ, so a rotation of the residual stream changes
nothing; neuron and head permutations, per-neuron and per-head rescalings and Q/K maps cancel inside
each product; after standardisation any positive rescaling of a tensor cancels too.

A mixture-of-experts layer (issue 35) stacks its experts' gate, up and down as one gated FFN of
experts·ffn neurons (shared experts last) and weighs each neuron's activation by its expert's routing
weight for that token (`Routing`): FFN = ((E·γf·Wgateᵀ) ⊙ (E·γf·Wupᵀ) ⊙ P)·(E·Wdown)ᵀ, P the router's
probabilities over all experts at the RMS-normalised rows, each repeated over its expert's neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from noseprint.core.layout import LayerShape

SCORES = ("softmax", "sigmoid")


@dataclass(frozen=True)
class Routing:
    """How a mixture-of-experts layer weighs its experts for a token, densely: the router's scores over *all*
    experts (softmax of the logits, or sigmoid scores normalised to sum 1: DeepSeek-V3), times `scale`
    (DeepSeek-V3's routed_scaling_factor), its top-k selection left out. The top-k would make the term jump
    when a fine-tune moves one token's k-th and (k+1)-th experts past each other; the dense weights move with
    the router continuously, and permuting the experts with the router's rows permutes them exactly.
    Shared experts (added with weight 1) come after the routed ones in the stacked FFN."""

    experts: int
    expert_ffn: int
    shared_ffn: int = 0
    score: str = "softmax"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"router score {self.score!r} is not one of {SCORES}")

    @property
    def ffn(self) -> int:
        return self.experts * self.expert_ffn + self.shared_ffn

    def expert_weights(self, logits: np.ndarray) -> np.ndarray:
        """(n, experts) routing weights from the router's (n, experts) logits."""
        if self.score == "softmax":
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            weights = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            scores = 1.0 / (1.0 + np.exp(-logits))
            weights = scores / scores.sum(axis=1, keepdims=True)
        return weights * self.scale

    def neuron_weights(self, logits: np.ndarray) -> np.ndarray:
        """(n, ffn): each routed neuron's expert weight, 1 for the shared experts' neurons."""
        routed = np.repeat(self.expert_weights(logits), self.expert_ffn, axis=1)
        return np.concatenate([routed, np.ones((logits.shape[0], self.shared_ffn))], axis=1)


def router_input(e: np.ndarray, ffn_norm: np.ndarray) -> np.ndarray:
    """What the router reads for each selected token: the row RMS-normalised, as the FFN's RMSNorm does, times
    γf. The routing weights are not scale-free (a softmax), so the row's scale is taken out as the model takes
    it out: a residual rescaling (E → c·E) or rotation leaves them unchanged."""
    rms = np.sqrt((e**2).mean(axis=1, keepdims=True))
    return e / np.where(rms > 0, rms, 1.0) * ffn_norm


def routing_weights(e: np.ndarray, w: dict) -> np.ndarray:
    """(n, ffn) neuron weights of a mixture-of-experts layer `w` (its "router", "router_bias", "routing")."""
    logits = router_input(e, w["ffn_norm"]) @ np.asarray(w["router"], dtype=np.float64).T + w["router_bias"]
    return w["routing"].neuron_weights(logits)


def repeat_kv(w: np.ndarray, shape: LayerShape) -> np.ndarray:
    """(kv_heads*hd, d) -> (heads*hd, d), each K/V head serving `heads/kv_heads` consecutive query heads."""
    if shape.heads == shape.kv_heads:
        return w
    group = shape.heads // shape.kv_heads
    per_head = w.reshape(shape.kv_heads, shape.head_dim, -1)
    return np.repeat(per_head, group, axis=0).reshape(shape.q_width, -1)


def canonical_embedding(e: np.ndarray, layer_norm: bool) -> np.ndarray:
    """E as the layers see it: LayerNorm removes each residual vector's mean, so its all-ones direction
    is invisible to every reader and writer (and to the function) and is dropped. The adapters apply it
    when they read E, so the committed embedding is already canonical and the circuit pays nothing."""
    return e - e.mean(axis=1, keepdims=True) if layer_norm else e


def layer_terms(e: np.ndarray, w: dict, shape: LayerShape) -> np.ndarray:
    """The three terms, multiplied E-first: (E·Wqᵀ)(E·Wkᵀ)ᵀ equals E·(Wqᵀ·Wk)·Eᵀ, but never forms a
    hidden x hidden matrix (0.3 instead of 69 GFLOP per term at hidden 4096, 16 tokens). E must be
    canonical already (`canonical_embedding`)."""
    attn_in, ffn_in = e * w["attn_norm"], e * w["ffn_norm"]  # γ travels with the readers
    k = repeat_kv(w["k"], shape)
    v = repeat_kv(w["v"], shape)
    qk = (attn_in @ w["q"].T) @ (attn_in @ k.T).T
    vo = (attn_in @ v.T) @ (e @ w["o"]).T
    if shape.gated:
        hidden = (ffn_in @ w["gate"].T) * (ffn_in @ w["up"].T)
        if "routing" in w:
            hidden = hidden * routing_weights(e, w)
    else:
        hidden = ffn_in @ w["ffn_in"].T
    ffn = hidden @ (e @ w["ffn_out"]).T
    return np.stack([qk, vo, ffn])


def invariant_terms(e: np.ndarray, layers: list[dict], shapes: list[LayerShape]) -> np.ndarray:
    """(3 * len(layers), n, n) raw terms, in the circuit's order."""
    return np.concatenate([layer_terms(e, w, s) for w, s in zip(layers, shapes, strict=True)])


def standardise(terms: np.ndarray) -> np.ndarray:
    """Per-term (x - mean) / std; scale-free (raw terms of real models can be ~1e-7), a constant term stays 0."""
    centred = terms - terms.mean(axis=(-2, -1), keepdims=True)
    std = np.sqrt((centred**2).mean(axis=(-2, -1), keepdims=True))
    return centred / np.where(std > 0, std, 1.0)


def invariant_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """HuRef's ICS (as a fraction, not a percentage): cosine of the standardised terms, flattened."""
    x, y = standardise(a).ravel(), standardise(b).ravel()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
