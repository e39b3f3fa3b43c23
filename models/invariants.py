"""HuRef's invariant terms computed directly in float64: the reference the circuit must match.

For layer weights in the `nn.Linear` (out, in) convention and E the embedding rows
of the selected tokens:

    QK  = E·Wqᵀ·Wk·Eᵀ       (K heads repeated to the query heads for grouped-query attention)
    VO  = E·Wvᵀ·Woᵀ·Eᵀ      (V heads repeated likewise)
    FFN = E·W1ᵀ·W2ᵀ·Eᵀ      (W1 = gate ⊙ up for a gated FFN, as in HuRef's code)

Each term is unchanged by permuting attention hidden units or FFN neurons, by an
orthogonal rotation of the Q/K inner space and by inverse rescalings; after
standardisation it is also unchanged by any positive rescaling of a tensor.
"""

from __future__ import annotations

import numpy as np

from core.layout import LayerShape


def repeat_kv(w: np.ndarray, shape: LayerShape) -> np.ndarray:
    """(kv_heads*hd, d) -> (heads*hd, d), each K/V head serving `heads/kv_heads` consecutive query heads."""
    if shape.heads == shape.kv_heads:
        return w
    group = shape.heads // shape.kv_heads
    per_head = w.reshape(shape.kv_heads, shape.head_dim, -1)
    return np.repeat(per_head, group, axis=0).reshape(shape.q_width, -1)


def layer_terms(e: np.ndarray, w: dict[str, np.ndarray], shape: LayerShape) -> np.ndarray:
    """HuRef's three terms, multiplied E-first: (E·Wqᵀ)(E·Wkᵀ)ᵀ equals E·(Wqᵀ·Wk)·Eᵀ, but never
    forms a hidden x hidden matrix (0.3 instead of 69 GFLOP per term at hidden 4096, 16 tokens)."""
    k = repeat_kv(w["k"], shape)
    v = repeat_kv(w["v"], shape)
    ffn_in = w["gate"] * w["up"] if shape.gated else w["ffn_in"]
    qk = (e @ w["q"].T) @ (e @ k.T).T
    vo = (e @ v.T) @ (e @ w["o"]).T
    ffn = (e @ ffn_in.T) @ (e @ w["ffn_out"]).T
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
