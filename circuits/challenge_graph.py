"""The forward pass as circuits: embedding, one transformer layer, one block of the output head, and the link
between the fingerprint's embedding rows and the model's. Each is exported to ONNX and compiled by EZKL;
every weight input is a committed piece (`core.whole_model`) with its blinding line, which the graphs slice off.

    embed:  one-hot rows (public, recomputed by the verifier), the tokens' embedding blocks -> h0, blinding
    layer:  h, the layer's pieces, scales -> h', blinding                    (LLaMA: RMSNorm, RoPE, GQA, SwiGLU)
    head:   h, final norm, one head block, model scales -> logits of that block (public)
    link:   the fingerprint's embedding piece, one-hot rows, the tokens' blocks, model scales
            -> max |fingerprint row - link · model row| (public)

The residual stream h is in units of the embedding's RMS (`core.whole_model`); hidden states pass from proof
to proof only as commitments, each with a blinding row so that its commitment hides it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import cast

import torch
from noseprint.core.whole_model import LAYER_SCALES, LOGIT_GAIN_BITS, MODEL_SCALES, SCALE_BITS, InferenceShape
from torch import nn

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


class _Transformer(nn.Module):
    """The attention and FFN arithmetic shared by the whole-layer circuit and the layer-part circuits."""

    def __init__(self, shape: InferenceShape, tokens: int):
        super().__init__()
        self.shape, self.tokens = shape, tokens
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.mask: torch.Tensor
        cos, sin = rope_tables(tokens, shape.head_dim, float(shape.rope_theta))
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.full((tokens, tokens), MASKED), diagonal=1))

    def _heads(self, x: torch.Tensor, count: int) -> torch.Tensor:
        heads = x.reshape(self.tokens, count, self.shape.head_dim).transpose(0, 1)
        return heads * self.cos + rotate_half(heads) * self.sin

    def attention(self, x: torch.Tensor, p: dict[str, list[torch.Tensor]], scale: dict[str, torch.Tensor],
                  kv_heads: int) -> torch.Tensor:  # fmt: skip
        """The attention of `kv_heads` K/V heads and their query heads, projected by their columns of o (blocks
        in `p`: q, k, v by rows with a blinding row, o by columns with a blinding column), before o's factor."""
        shape, t = self.shape, self.tokens
        group = shape.heads // shape.kv_heads
        q = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["q"]], dim=1) * scale["q"]
        k = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["k"]], dim=1) * scale["k"]
        v = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["v"]], dim=1) * scale["v"]
        qh = self._heads(q, kv_heads * group)
        kh = self._heads(k, kv_heads).repeat_interleave(group, dim=0)
        vh = v.reshape(t, kv_heads, shape.head_dim).transpose(0, 1).repeat_interleave(group, dim=0)
        attention = torch.softmax(qh @ kh.transpose(1, 2) + self.mask, dim=-1)
        context = (attention @ vh).transpose(0, 1).reshape(t, kv_heads * group * shape.head_dim)
        width = context.shape[1] // len(p["o"])
        blocks = (context[:, j * width : (j + 1) * width] @ w[:, : w.shape[1] - 1].T for j, w in enumerate(p["o"]))
        return cast(torch.Tensor, sum(blocks))

    @staticmethod
    def feed_forward(x: torch.Tensor, p: dict[str, list[torch.Tensor]], scale: dict[str, torch.Tensor]) -> torch.Tensor:
        """SwiGLU over the FFN rows in `p` (gate, up by rows, down by columns), before down's factor."""
        gate = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["gate"]], dim=1) * scale["gate"]
        up = torch.cat([x @ w[: w.shape[0] - 1].T for w in p["up"]], dim=1) * scale["up"]
        act = gate * torch.sigmoid(gate) * up
        width = act.shape[1] // len(p["down"])
        blocks = (act[:, j * width : (j + 1) * width] @ w[:, : w.shape[1] - 1].T for j, w in enumerate(p["down"]))
        return cast(torch.Tensor, sum(blocks))


def _split(inputs: tuple[torch.Tensor, ...], counts: list[tuple[str, int]]) -> dict[str, list[torch.Tensor]]:
    """The graph's inputs by role, `counts` giving each role's number of inputs in order."""
    out, start = {}, 0
    for name, count in counts:
        out[name] = list(inputs[start : start + count])
        start += count
    return out


def _layer_scales(scales: torch.Tensor) -> dict[str, torch.Tensor]:
    s = scale_vector(scales)
    return {name: s[i] for i, name in enumerate(LAYER_SCALES)}


class LayerCircuit(_Transformer):
    """forward(h, attn_norm, q.., k.., v.., o.., ffn_norm, gate.., up.., down.., scales, blinding) -> h', blinding."""

    def __init__(self, shape: InferenceShape, tokens: int, attention_blocks: int, ffn_blocks: int):
        super().__init__(shape, tokens)
        self.na, self.nf = attention_blocks, ffn_blocks

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        counts = [("h", 1), ("attn_norm", 1), ("q", self.na), ("k", self.na), ("v", self.na), ("o", self.na)]
        counts += [("ffn_norm", 1), ("gate", self.nf), ("up", self.nf), ("down", self.nf), ("scales", 1)]
        p = _split(inputs, [*counts, ("blinding", 1)])
        scale = _layer_scales(p["scales"][0])
        h = p["h"][0][: self.tokens]
        x = rms_norm(h, scale["eps"]) * p["attn_norm"][0][:1]
        h = h + self.attention(x, p, scale, self.shape.kv_heads) * scale["o"]
        x = rms_norm(h, scale["eps"]) * p["ffn_norm"][0][:1]
        h = h + self.feed_forward(x, p, scale) * scale["down"]
        return torch.cat([h, p["blinding"][0]], dim=0)


class AttentionPartCircuit(_Transformer):
    """forward(h, acc, attn_norm, q.., k.., v.., o.., scales, blinding) -> acc + these blocks' output, blinding.

    A layer too big for one proof is proven part by part (`core.whole_model.layer_parts`): each attention part
    (`blocks` of the chunking's K/V heads with their query heads, `kv_heads` in all) adds its output to the
    running residual `acc`, which starts as the layer's input h (the norm reads h itself)."""

    def __init__(self, shape: InferenceShape, tokens: int, kv_heads: int, blocks: int):
        super().__init__(shape, tokens)
        self.kv_heads, self.blocks = kv_heads, blocks

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        counts = [("h", 1), ("acc", 1), ("attn_norm", 1)] + [(role, self.blocks) for role in ("q", "k", "v", "o")]
        p = _split(inputs, [*counts, ("scales", 1), ("blinding", 1)])
        scale = _layer_scales(p["scales"][0])
        x = rms_norm(p["h"][0][: self.tokens], scale["eps"]) * p["attn_norm"][0][:1]
        acc = p["acc"][0][: self.tokens] + self.attention(x, p, scale, self.kv_heads) * scale["o"]
        return torch.cat([acc, p["blinding"][0]], dim=0)


class FfnPartCircuit(_Transformer):
    """forward(h, acc, ffn_norm, gate.., up.., down.., scales, blinding) -> acc + these blocks' output, blinding.

    h is the residual after the attention (the norm's input); `acc` starts there and gathers the parts."""

    def __init__(self, shape: InferenceShape, tokens: int, blocks: int):
        super().__init__(shape, tokens)
        self.blocks = blocks

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        counts = [("h", 1), ("acc", 1), ("ffn_norm", 1)] + [(role, self.blocks) for role in ("gate", "up", "down")]
        p = _split(inputs, [*counts, ("scales", 1), ("blinding", 1)])
        scale = _layer_scales(p["scales"][0])
        x = rms_norm(p["h"][0][: self.tokens], scale["eps"]) * p["ffn_norm"][0][:1]
        acc = p["acc"][0][: self.tokens] + self.feed_forward(x, p, scale) * scale["down"]
        return torch.cat([acc, p["blinding"][0]], dim=0)


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


def export_layer_part(
    shape: InferenceShape, tokens: int, kind: str, blocks: int, block_kv_heads: int,
    input_shapes: list[tuple[int, int]], path: Path,
) -> None:  # fmt: skip
    """An attention or FFN part (`kind`) of `blocks` blocks; `input_shapes`: the committed shapes of its pieces
    in `LayerPart.pieces` order (norm, weight blocks, scales); `block_kv_heads`: K/V heads per attention block."""
    d = shape.hidden
    examples = [_ones((tokens + 1, d)), _ones((tokens + 1, d)), *(_ones(s) for s in input_shapes), _ones((1, d))]
    names = ["h", "acc", *(f"w{i}" for i in range(len(input_shapes))), "blinding"]
    module: nn.Module
    if kind == "attention":
        module = AttentionPartCircuit(shape, tokens, blocks * block_kv_heads, blocks)
    else:
        module = FfnPartCircuit(shape, tokens, blocks)
    _export(module, examples, names, "acc_out", path)


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
