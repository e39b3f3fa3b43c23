"""The fingerprint circuit as a torch module: committed tensors -> raw encoder output.

From the committed tensors (see `core.layout`) it computes HuRef's three
invariant terms for each fingerprinted layer,

    E·Wqᵀ·Wk·Eᵀ,   E·Wvᵀ·Woᵀ·Eᵀ,   E·W1ᵀ·W2ᵀ·Eᵀ   (W1 = gate ⊙ up for a gated FFN),

standardises each term and runs the released encoder. It is exported to ONNX and
compiled by EZKL; its float version is what tests compare with the direct
computation from `transformers` modules.

Row-cost rules this graph follows (measured, BENCHMARKS.md):
- EZKL's rows grow with the values an operation touches, not with MACs (matmuls
  use Freivalds' check): products are ordered so intermediates are n x width.
- A rebase (fixed-point rescale) costs ~32 rows per value and forgoes the cheap
  matmul path, so the run settings rebase only above scale 3s: the weight-sized
  products (E·Wᵀ at 2s, gate ⊙ up at 2s, E·(gate ⊙ up)ᵀ at 3s) are never rebased;
  only the n x n terms are.
- Grouped-query heads are summed before the product instead of repeating K/V.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.layout import CircuitLayout, LayerShape

STANDARDISE_EPS = 1e-6
TERM_PEAK_BITS = 4
"""After its shift, a term's largest magnitude is at most 2^TERM_PEAK_BITS.

The raw terms reach d^1.5 and more; squaring them in `standardise` would overflow
EZKL's decomposition range. Dividing each term by a public power of two first keeps
every value in the range EZKL's non-linear ops are built for, and standardisation
makes the result independent of the divisor. The prover picks the shifts from the
float terms; they are part of the circuit description, so the verifier rebuilds
exactly the same circuit.
"""


def choose_term_shifts(terms: np.ndarray) -> list[int]:
    """Power-of-two divisors that bring each term's peak magnitude to at most 2^TERM_PEAK_BITS."""
    shifts = []
    for term in terms:
        peak = float(np.abs(term).max())
        shifts.append(max(0, math.ceil(math.log2(peak)) - TERM_PEAK_BITS) if peak > 0 else 0)
    return shifts


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
    """The three n x n invariant terms of one layer.

    `w` holds the committed tensors *with* their blinding line; each product with E
    yields one extra column (from the blinding line), sliced away right there, while
    it is only n values wide.
    """
    qw, kvw, f = layer.q_width, layer.kv_width, layer.ffn
    a = sum_query_groups((e @ w["q"].T)[:, :qw], layer)  # n x kv_width
    b = (e @ w["k"].T)[:, :kvw]
    qk = a @ b.T
    c = (e @ w["v"].T)[:, :kvw]
    o = sum_query_groups((e @ w["o"])[:, :qw], layer)  # E·Wo is n x q_width
    vo = c @ o.T
    ffn_in = w["gate"] * w["up"] if layer.gated else w["ffn_in"]
    f1 = (e @ ffn_in.T)[:, :f]
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

    def forward(self, *committed: torch.Tensor) -> torch.Tensor:
        raw = self.invariant_terms(*committed)
        shifts = self.layout.term_shifts or (0,) * len(raw)
        terms = torch.stack([standardise(t / float(2**k)) for t, k in zip(raw, shifts, strict=True)])
        return self.encoder(terms.unsqueeze(0)).squeeze(0)


def export_onnx(layout: CircuitLayout, encoder: nn.Module, path: Path) -> None:
    """Export with fixed input shapes and a fixed opset, so every machine gets the same graph."""
    module = FingerprintCircuit(layout, encoder).eval()
    pieces = layout.pieces()
    examples = tuple(torch.zeros(piece.committed_shape) for piece in pieces)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: stable, fixed-shape graphs
        torch.onnx.export(
            module,
            examples,
            str(path),
            input_names=[piece.name for piece in pieces],
            output_names=["z_raw"],
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )
