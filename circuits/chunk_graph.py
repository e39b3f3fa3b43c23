"""The chunked fingerprint as torch modules: one chunk circuit per chunk shape, one encode circuit.

    chunk:   E, γ, weight blocks, R  ->  [partial term (n x n); R]        inputs and output committed
    encode:  every chunk's output, owner limbs  ->  z_raw, peaks, owner    inputs committed, outputs public

The partial term of block j is what `circuits.graph.layer_terms` computes with only that block's rows
(`core.chunks` states the sums); the encode circuit adds the blocks of each term and continues exactly as
`circuits.graph.FingerprintCircuit` does, outputting the term peaks and passing the owner limbs through. R, a
few rows of random values, rides along with the partial term so that its commitment (EZKL does not blind
`polycommit` columns) hides it; the encode circuit slices R off.
Both graphs follow the row-cost rules in `circuits.graph`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from noseprint.circuits.graph import OUTPUT_NAMES, FingerprintCircuit, term_peak
from noseprint.core.chunks import ChunkShape
from noseprint.core.layout import CircuitLayout
from noseprint.core.statement import OWNER_LIMBS
from torch import nn

OPSET = 17


def sum_groups(t: torch.Tensor, shape: ChunkShape) -> torch.Tensor:
    """(n, q_rows) -> (n, rows): add the query heads that share a K/V head (`circuits.graph.sum_query_groups`)."""
    if shape.group == 1:
        return t
    n, heads = t.shape[0], shape.rows // shape.head_dim
    return t.reshape(n, heads, shape.group, shape.head_dim).sum(dim=2).reshape(n, shape.rows)


def partial_term(shape: ChunkShape, embedding: torch.Tensor, norm: torch.Tensor, *blocks: torch.Tensor) -> torch.Tensor:
    """The n x n contribution of one block to its term; every input carries its blinding line."""
    n, r, qr = shape.tokens, shape.rows, shape.q_rows
    e = embedding[:n]
    x = e * norm[:1]
    if shape.kind == "qk":
        q, k = blocks
        return sum_groups((x @ q.T)[:, :qr], shape) @ (x @ k.T)[:, :r].T
    if shape.kind == "vo":
        v, o = blocks
        return (x @ v.T)[:, :r] @ sum_groups((e @ o)[:, :qr], shape).T
    *ins, out = blocks
    if shape.gated:
        f1 = (x @ ins[0].T)[:, :r] * (x @ ins[1].T)[:, :r]
    else:
        f1 = (x @ ins[0].T)[:, :r]
    return f1 @ (e @ out)[:, :r].T


class ChunkCircuit(nn.Module):
    """forward(E, γ, *weight blocks, R) -> the partial term with R below it."""

    def __init__(self, shape: ChunkShape):
        super().__init__()
        self.shape = shape

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *committed, blinding = inputs
        return torch.cat([partial_term(self.shape, *committed), blinding], dim=0)


class EncodeCircuit(nn.Module):
    """forward(*chunk outputs in chunk order, owner limbs) -> (z_raw, term peaks, owner limbs)."""

    def __init__(self, layout: CircuitLayout, chunks_per_term: list[int], encoder: nn.Module):
        super().__init__()
        self.layout = layout
        self.chunks_per_term = chunks_per_term
        self.fingerprint = FingerprintCircuit(layout, encoder)

    def terms(self, partials: list[torch.Tensor]) -> list[torch.Tensor]:
        n, terms, start = self.layout.tokens, [], 0
        for count in self.chunks_per_term:
            block = partials[start : start + count]
            total = block[0][:n]
            for partial in block[1:]:
                total = total + partial[:n]
            terms.append(total)
            start += count
        return terms

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        *partials, owner = inputs
        shifts = self.layout.term_shifts or (0,) * len(self.chunks_per_term)
        shifted = [t / float(2**k) for t, k in zip(self.terms(partials), shifts, strict=True)]
        peaks = torch.cat([term_peak(t) for t in shifted])
        return self.fingerprint.encode(shifted), peaks, owner * 1.0


def _export(module: nn.Module, examples: tuple[torch.Tensor, ...], names: list[str], outputs: list[str], path: Path):
    """Fixed input shapes and a fixed opset, so every machine gets the same graph."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: stable, fixed-shape graphs
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the encoder's constant matrices are meant so
        torch.onnx.export(
            module.eval(),
            examples,
            str(path),
            input_names=names,
            output_names=outputs,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def export_chunk_onnx(shape: ChunkShape, path: Path) -> None:
    d = shape.hidden
    committed = [(shape.tokens + 1, d), (2, d)]
    for _, (rows, cols), axis in shape.input_shapes():
        committed.append((rows + 1, cols) if axis == 0 else (rows, cols + 1))
    examples = (*(torch.zeros(s) for s in committed), torch.zeros(shape.blinding_rows, shape.tokens))
    names = ["embedding", "norm", *(role for role, _, _ in shape.input_shapes()), "blinding"]
    _export(ChunkCircuit(shape), examples, names, ["partial"], path)


def export_encode_onnx(
    layout: CircuitLayout, chunks_per_term: list[int], output_shape: tuple[int, int], encoder: nn.Module, path: Path
) -> None:
    count = sum(chunks_per_term)
    examples = (*(torch.zeros(output_shape) for _ in range(count)), torch.zeros(OWNER_LIMBS))
    names = [f"partial{i}" for i in range(count)] + ["owner"]
    _export(EncodeCircuit(layout, chunks_per_term, encoder), examples, names, OUTPUT_NAMES, path)
