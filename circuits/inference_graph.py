"""The forward pass as circuits: embedding, one transformer layer, one block of the output head, and the link
between the fingerprint's embedding rows and the model's. Each is exported to ONNX and compiled by EZKL;
every weight input is a committed piece (`core.inference`) with its blinding line, which the graphs slice off.

    embed:  one-hot rows (public, recomputed by the verifier), the tokens' embedding blocks -> h0, blinding
    layer:  h, the layer's pieces, scales -> h', blinding                    (LLaMA: RMSNorm, RoPE, GQA, SwiGLU)
    head:   h, final norm, one head block, model scales -> logits of that block (public)
    link:   the fingerprint's embedding piece, one-hot rows, the tokens' blocks, model scales
            -> max |fingerprint row - link · model row| (public)

The residual stream h is in units of the embedding's RMS (`core.inference`); hidden states pass from proof
to proof only as commitments, each with a blinding row so that its commitment hides it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from core.inference import LAYER_SCALES, LOGIT_GAIN_BITS, MODEL_SCALES, SCALE_BITS, InferenceShape

OPSET = 17
MASKED = -100.0
"""Added to the scores of future positions: exp(-100) is zero at any fixed-point scale the circuit uses."""


def rope_tables(tokens: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of rotary embedding at positions 0..tokens-1, as transformers' LLaMA computes them."""
    inverse = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(tokens, dtype=torch.float64), inverse)
    both = torch.cat([angles, angles], dim=-1)
    return both.cos().float(), both.sin().float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rms_norm(h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return h / torch.sqrt((h * h).mean(dim=-1, keepdim=True) + eps)


def scale_vector(scales: torch.Tensor) -> torch.Tensor:
    """The committed factors as numbers (dividing by a power of two only moves EZKL's fixed point)."""
    return scales[0] / float(1 << SCALE_BITS)


class EmbedCircuit(nn.Module):
    """forward(one-hot (T x rows), block_0 .. block_{T-1}, blinding (1 x d)) -> (T+1) x d."""

    def __init__(self, shape: InferenceShape, tokens: int):
        super().__init__()
        self.rows, self.tokens = shape.embed_rows, tokens

    def forward(self, onehot: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        *blocks, blinding = inputs
        rows = [onehot[t : t + 1] @ blocks[t][: self.rows] for t in range(self.tokens)]
        return torch.cat([*rows, blinding], dim=0)


class LayerCircuit(nn.Module):
    """forward(h, attn_norm, q.., k.., v.., o.., ffn_norm, gate.., up.., down.., scales, blinding) -> h', blinding."""

    def __init__(self, shape: InferenceShape, tokens: int, attention_blocks: int, ffn_blocks: int):
        super().__init__()
        self.shape, self.tokens, self.na, self.nf = shape, tokens, attention_blocks, ffn_blocks
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.mask: torch.Tensor
        cos, sin = rope_tables(tokens, shape.head_dim, float(shape.rope_theta))
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.full((tokens, tokens), MASKED), diagonal=1))

    def _split(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, list[torch.Tensor]]:
        counts = [("h", 1), ("attn_norm", 1), ("q", self.na), ("k", self.na), ("v", self.na), ("o", self.na)]
        counts += [("ffn_norm", 1), ("gate", self.nf), ("up", self.nf), ("down", self.nf), ("scales", 1)]
        counts += [("blinding", 1)]
        out, start = {}, 0
        for name, count in counts:
            out[name] = list(inputs[start : start + count])
            start += count
        return out

    def _heads(self, x: torch.Tensor, count: int) -> torch.Tensor:
        heads = x.reshape(self.tokens, count, self.shape.head_dim).transpose(0, 1)
        return heads * self.cos + rotate_half(heads) * self.sin

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        p = self._split(inputs)
        s = scale_vector(p["scales"][0])
        scale = {name: s[i] for i, name in enumerate(LAYER_SCALES)}
        shape, t = self.shape, self.tokens
        h = p["h"][0][:t]
        x = rms_norm(h, scale["eps"]) * p["attn_norm"][0][:1]
        q = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["q"]], dim=1) * scale["q"]
        k = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["k"]], dim=1) * scale["k"]
        v = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["v"]], dim=1) * scale["v"]
        group = shape.heads // shape.kv_heads
        qh = self._heads(q, shape.heads)
        kh = self._heads(k, shape.kv_heads).repeat_interleave(group, dim=0)
        vh = v.reshape(t, shape.kv_heads, shape.head_dim).transpose(0, 1).repeat_interleave(group, dim=0)
        attention = torch.softmax(qh @ kh.transpose(1, 2) + self.mask, dim=-1)
        context = (attention @ vh).transpose(0, 1).reshape(t, shape.heads * shape.head_dim)
        width = context.shape[1] // self.na
        attended = sum(context[:, j * width : (j + 1) * width] @ w[:, : w.shape[1] - 1].T for j, w in enumerate(p["o"]))
        h = h + attended * scale["o"]
        x = rms_norm(h, scale["eps"]) * p["ffn_norm"][0][:1]
        gate = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["gate"]], dim=1) * scale["gate"]
        up = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["up"]], dim=1) * scale["up"]
        act = gate * torch.sigmoid(gate) * up
        width = act.shape[1] // self.nf
        down = sum(act[:, j * width : (j + 1) * width] @ w[:, : w.shape[1] - 1].T for j, w in enumerate(p["down"]))
        h = h + down * scale["down"]
        return torch.cat([h, p["blinding"][0]], dim=0)


class HeadCircuit(nn.Module):
    """forward(h, final_norm, head block, model scales) -> logits·2^LOGIT_GAIN_BITS (T x rows) of that block.

    The gain rides on the head factor (a smaller power of two to divide by), so it enters before the last
    product is rounded: the rounding falls on the gained logits."""

    def __init__(self, shape: InferenceShape, tokens: int):
        super().__init__()
        self.tokens = tokens

    def forward(self, h: torch.Tensor, norm: torch.Tensor, block: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        s = scale_vector(scales)
        x = rms_norm(h[: self.tokens], s[MODEL_SCALES.index("eps")]) * norm[:1]
        gained_head = scales[0][MODEL_SCALES.index("head")] / float(1 << (SCALE_BITS - LOGIT_GAIN_BITS))
        return (x @ block[: block.shape[0] - 1].T) * gained_head


class LinkCircuit(nn.Module):
    """forward(fingerprint embedding piece, one-hot (n x rows), block_0 .. block_{n-1}, model scales)
    -> the largest |fingerprint row - link · model row| (one public number)."""

    def __init__(self, shape: InferenceShape, tokens: int):
        super().__init__()
        self.rows, self.tokens = shape.embed_rows, tokens

    def forward(self, fingerprint: torch.Tensor, onehot: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        *blocks, scales = inputs
        link = scale_vector(scales)[MODEL_SCALES.index("link")]
        rows = torch.cat([onehot[t : t + 1] @ blocks[t][: self.rows] for t in range(self.tokens)], dim=0)
        return torch.abs(fingerprint[: self.tokens] - rows * link).max().reshape(1)


def _export(module: nn.Module, examples: list[torch.Tensor], names: list[str], output: str, path: Path) -> None:
    """Fixed shapes and opset, so every machine exports the same graph."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module.eval(),
            tuple(examples),
            str(path),
            input_names=names,
            output_names=[output],
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _ones(shape: tuple[int, int]) -> torch.Tensor:
    """Example inputs: ones keep every norm's square root away from zero while tracing."""
    return torch.ones(shape)


def export_embed(shape: InferenceShape, tokens: int, path: Path) -> None:
    d, rows = shape.hidden, shape.embed_rows
    examples = [_ones((tokens, rows)), *(_ones((rows + 1, d)) for _ in range(tokens)), _ones((1, d))]
    names = ["onehot", *(f"block{t}" for t in range(tokens)), "blinding"]
    _export(EmbedCircuit(shape, tokens), examples, names, "h", path)


def export_layer(
    shape: InferenceShape, tokens: int, blocks: tuple[int, int], input_shapes: list[tuple[int, int]], path: Path
) -> None:
    """`blocks`: attention and FFN blocks per tensor; `input_shapes`: the committed shapes of the layer's pieces
    in `LayerPieces.ordered` order."""
    d = shape.hidden
    examples = [_ones((tokens + 1, d)), *(_ones(s) for s in input_shapes), _ones((1, d))]
    names = ["h", *(f"w{i}" for i in range(len(input_shapes))), "blinding"]
    _export(LayerCircuit(shape, tokens, *blocks), examples, names, "h_out", path)


def export_head(shape: InferenceShape, tokens: int, path: Path) -> None:
    d = shape.hidden
    examples = [_ones((tokens + 1, d)), _ones((2, d)), _ones((shape.head_rows + 1, d)), _ones((2, 16))]
    _export(HeadCircuit(shape, tokens), examples, ["h", "final_norm", "block", "scales"], "logits", path)


def export_link(shape: InferenceShape, tokens: int, path: Path) -> None:
    d, rows = shape.hidden, shape.embed_rows
    examples = [_ones((tokens + 1, d)), _ones((tokens, rows)), *(_ones((rows + 1, d)) for _ in range(tokens))]
    examples.append(_ones((2, 16)))
    names = ["fingerprint", "onehot", *(f"block{t}" for t in range(tokens)), "scales"]
    _export(LinkCircuit(shape, tokens), examples, names, "deviation", path)
