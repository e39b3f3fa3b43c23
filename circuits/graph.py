"""The fingerprint circuit as a torch module: committed tensors -> raw encoder output.

From the committed tensors (see `core.layout`) it computes the three canonical
invariant terms of each fingerprinted layer (`models.invariants` states them and
docs/invariants.md argues them): HuRef's QK, VO and FFN products with the norm
scales carried by the readers, and the gated FFN
as ((E·γ·Wgateᵀ) ⊙ (E·γ·Wupᵀ))·(E·Wdown)ᵀ. It standardises each term and runs
the released encoder. The encode circuit (`circuits.chunk_graph`) runs its
second half on the summed chunk terms; its float version is what tests compare
with the direct computation from `transformers` modules.

Row-cost rules this graph follows (measured, BENCHMARKS.md):
- EZKL's rows grow with the values an operation touches, not with MACs (matmuls
  use Freivalds' check): products are ordered so intermediates are n x width.
- A rebase (fixed-point rescale) costs rows per value and forgoes the cheap
  matmul path, so the run settings rebase only above scale 3s: the weight-sized
  products (E·γ at 2s, E·γ·Wᵀ at 3s) are never rebased; the n x ffn gated
  product and the n x n terms are.
- Grouped-query heads are summed before the product instead of repeating K/V.
"""

from __future__ import annotations

import numpy as np
import torch
from noseprint.core.layout import CircuitLayout, LayerShape
from noseprint.core.statement import shift_for_peak
from torch import nn

STANDARDISE_EPS = 1e-6
OUTPUT_NAMES = ["z_raw", "peaks", "owner_out"]
"""The public outputs, in the order `core.statement` reads them."""
# The raw terms reach d^1.5 and more; squaring them in `standardise` would overflow EZKL's decomposition
# range. Dividing each term by a public power of two first keeps every value in the range EZKL's
# non-linear ops are built for. The prover picks the shifts from the float terms; the circuit outputs each
# shifted term's peak so the verifier can check they are the minimal ones (`core.statement`).


def choose_term_shifts(terms: np.ndarray) -> list[int]:
    """Power-of-two divisors that bring each term's peak magnitude to at most 2^TERM_PEAK_BITS."""
    return [shift_for_peak(float(np.abs(term).max())) for term in terms]


def sum_query_groups(t: torch.Tensor, layer: LayerShape) -> torch.Tensor:
    """(n, heads*hd) -> (n, kv_heads*hd), adding the query heads that share a K/V head.

    Σ_h A_h·B_{h//g}ᵀ = Σ_j (Σ_{h in group j} A_h)·B_jᵀ, so one product with the
    narrow K/V side replaces HuRef's explicit head repetition, with equal result.
    """
    if layer.heads == layer.kv_heads:
        return t
    group = layer.heads // layer.kv_heads
    n = t.shape[0]
    return t.reshape(n, layer.kv_heads, group, layer.head_dim).sum(dim=2).reshape(n, layer.kv_width)


def layer_terms(e: torch.Tensor, w: dict[str, torch.Tensor], layer: LayerShape) -> list[torch.Tensor]:
    """The three n x n invariant terms of one layer, from the canonical E (LayerNorm models: centred by
    the adapter before it is committed, `models.invariants.canonical_embedding`).

    `w` holds the committed tensors *with* their blinding line; each product with E
    yields one extra column (from the blinding line), sliced away right there, while
    it is only n values wide; a norm's blinding line is its second row.
    """
    qw, kvw, f = layer.q_width, layer.kv_width, layer.ffn
    attn_in = e * w["attn_norm"][:1]  # γ travels with the readers
    ffn_in = e * w["ffn_norm"][:1]
    a = sum_query_groups((attn_in @ w["q"].T)[:, :qw], layer)  # n x kv_width
    b = (attn_in @ w["k"].T)[:, :kvw]
    qk = a @ b.T
    c = (attn_in @ w["v"].T)[:, :kvw]
    o = sum_query_groups((e @ w["o"])[:, :qw], layer)  # E·Wo is n x q_width
    vo = c @ o.T
    if layer.gated:
        f1 = (ffn_in @ w["gate"].T)[:, :f] * (ffn_in @ w["up"].T)[:, :f]
    else:
        f1 = (ffn_in @ w["ffn_in"].T)[:, :f]
    f2 = (e @ w["ffn_out"])[:, :f]
    ffn = f1 @ f2.T
    return [qk, vo, ffn]


def standardise(term: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the last two axes, as HuRef does before its encoder."""
    centred = term - term.mean(dim=(-2, -1), keepdim=True)
    variance = (centred * centred).mean(dim=(-2, -1), keepdim=True)
    return centred / torch.sqrt(variance + STANDARDISE_EPS)


class FingerprintCircuit(nn.Module):
    """forward(*committed tensors in `layout.pieces()` order) -> raw encoder output."""

    def __init__(self, layout: CircuitLayout, encoder: nn.Module):
        super().__init__()
        self.layout = layout
        self.encoder = encoder
        self.names = [piece.name for piece in layout.pieces()]

    def invariant_terms(self, *committed: torch.Tensor) -> list[torch.Tensor]:
        tensors = dict(zip(self.names, committed, strict=True))
        e = tensors["embedding"][: self.layout.tokens]
        terms = []
        for index, layer in enumerate(self.layout.layers):
            weights = {role: tensors[f"layer{index}.{role}"] for role, _, _ in layer.tensor_shapes()}
            terms += layer_terms(e, weights, layer)
        return terms

    def shifted_terms(self, *committed: torch.Tensor) -> list[torch.Tensor]:
        raw = self.invariant_terms(*committed)
        shifts = self.layout.term_shifts or (0,) * len(raw)
        return [t / float(2**k) for t, k in zip(raw, shifts, strict=True)]

    def encode(self, shifted: list[torch.Tensor]) -> torch.Tensor:
        terms = torch.stack([standardise(t) for t in shifted])
        return self.encoder(terms.unsqueeze(0)).squeeze(0)

    def forward(self, *committed: torch.Tensor) -> torch.Tensor:
        return self.encode(self.shifted_terms(*committed))


def term_peak(term: torch.Tensor) -> torch.Tensor:
    """max |term| as a (1, 1) tensor (EZKL translates this reduction; a 0-d reshape it does not)."""
    return torch.maximum(term.amax(dim=(0, 1), keepdim=True), -term.amin(dim=(0, 1), keepdim=True)).reshape(1, 1)
