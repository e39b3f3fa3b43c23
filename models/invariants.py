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
"""

from __future__ import annotations

import numpy as np
from noseprint.core.layout import LayerShape


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


def layer_terms(e: np.ndarray, w: dict[str, np.ndarray], shape: LayerShape) -> np.ndarray:
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
    else:
        hidden = ffn_in @ w["ffn_in"].T
    ffn = hidden @ (e @ w["ffn_out"]).T
    return np.stack([qk, vo, ffn])


def invariant_terms(e: np.ndarray, layers: list[dict[str, np.ndarray]], shapes: list[LayerShape]) -> np.ndarray:
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
