"""Function-preserving transforms of the residual stream, for every family the fingerprint reads.

A thief who holds a checkpoint can change every weight without changing a single logit: fold the
norms' scales into the layers that read them, then rotate, permute or rescale the residual stream.
The canonical fingerprint (models/invariants.py, docs/invariants.md) is built to be blind to these,
so every model derived here must keep its parent's fingerprint.

Each family is described once (`describe`) by the roles its modules play on the residual stream:

* embeddings: rows that are residual vectors (word, position, token-type embeddings; OPT's word
  embeddings are not when `project_in` maps them to the hidden size: then project_in is a writer);
* writers: layers whose output is added to the stream (attention output, FFN output, project_in);
* norms: each pre-norm with the readers of its output (the final norm's reader is lm_head or
  OPT's project_out); post-norms (BERT, OPT-350m, Gemma 2's writer norms) normalise the stream or a
  writer's output and have no reader to fold into;
* raw readers: layers that read the stream without a norm of their own (post-LN models).

Conventions: `nn.Linear` weights are (out, in), GPT-2's `Conv1D` weights (in, out). Every transform
works on a deep copy, computes in float64 and casts back to the parameter's dtype. A residual map M
(hidden states of the new model = those of the original · M) is recorded on the model so that an
encoder without an LM head (BERT) can still be compared output for output (`max_logit_change`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from bench.zoo import reparam

RESIDUAL_MAP = "noseprint_residual_map"
"""Attribute holding the accumulated residual map M (float64, hidden x hidden)."""

LLAMA_TYPES = frozenset({"llama", "mistral", "qwen2", "gemma", "gemma2"})
GEMMA_TYPES = frozenset({"gemma", "gemma2"})
GEMMA_OFFSET = 1.0
"""Gemma's RMSNorm scales by 1 + weight: γ = 1 means weight = 0."""
ISSUE35_TYPES = frozenset(
    {"qwen3", "smollm3", "gemma3_text", "olmo2", "mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3"}
)
"""Issue 35's families (their own transforms: `bench.attacks.families`)."""
RMS_TYPES = LLAMA_TYPES | {"phi3"} | ISSUE35_TYPES
LAYERNORM_TYPES = frozenset({"gpt2", "gpt_neox", "gptj", "opt", "falcon", "bert"})
ALL_TYPES = RMS_TYPES | LAYERNORM_TYPES

DIAGONAL_TOLERANCE = 1e-9
"""Relative off-diagonal mass allowed when a norm scale diag(γ) is conjugated by a residual map."""
MAP_TOLERANCE = 1e-9
"""How far from orthogonal (or from keeping the all-ones direction) a residual map may be."""
LOG_SCALE_RANGE = math.log(4.0)
"""Seeded residual scales are drawn log-uniformly in [1/4, 4]."""
SHIFT_STD = 0.5
"""Spread of the all-ones components added to LayerNorm streams (relative to 1 per entry)."""


# ---------------------------------------------------------------------------------------------
# The description of a family's residual stream


@dataclass
class Norm:
    """A pre-norm and the layers that read its output (the layers its γ and β fold into)."""

    module: nn.Module
    readers: list[nn.Module]


@dataclass
class Ffn:
    """One FFN: its input layers (whose output rows come in `blocks` neuron blocks) and its output layer."""

    inputs: list[nn.Module]
    output: nn.Module
    blocks: int = 1


@dataclass
class Stream:
    """How one model reads and writes its residual stream."""

    model_type: str
    hidden: int
    embeddings: list[nn.Module]
    writers: list[nn.Module]
    norms: list[Norm]
    ffns: list[Ffn]
    post_norms: list[nn.Module] = field(default_factory=list)
    raw_readers: list[nn.Module] = field(default_factory=list)
    centred: bool = False
    """LayerNorm: every norm removes the mean, so a residual map must keep the all-ones direction."""
    pre_norm: bool = True
    """Every reader reads the stream through a norm of its own (the norm can be folded)."""
    mean_free: bool = False
    """Nothing ever reads the stream's all-ones component (LayerNorm before every reader)."""
    offset: float = 0.0
    head_norms: list[nn.Module] = field(default_factory=list)
    """Norms inside the attention (Qwen3's and OLMo 2's q/k norms, DeepSeek's latent norms): not on the stream,
    never folded or mapped, but their scales are part of the function (the negative test redraws them)."""

    def readers(self) -> list[nn.Module]:
        return [r for norm in self.norms for r in norm.readers] + self.raw_readers

    def norm_modules(self) -> list[nn.Module]:
        return [norm.module for norm in self.norms] + self.post_norms


@dataclass(eq=False)
class Fused:
    """A fused expert tensor (experts, a, b) that meets the residual stream along `axis` (1 or 2), as a reader
    or a writer; a writer's bias (experts, hidden) along `bias_axis`. Stands in a Stream where a module would."""

    weight: nn.Parameter
    axis: int
    bias: nn.Parameter | None = None
    bias_axis: int = 0


def _lm_head(model: nn.Module) -> list[nn.Module]:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [head] if head is not None else []


def _llama_stream(model: nn.Module) -> Stream:
    inner, model_type = model.model, model.config.model_type
    gemma2 = model_type in ("gemma2", "gemma3_text")
    norms, writers, ffns, post = [], [], [], []
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        ffn_norm = layer.pre_feedforward_layernorm if gemma2 else layer.post_attention_layernorm
        norms += [Norm(layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj]),
                  Norm(ffn_norm, [mlp.gate_proj, mlp.up_proj])]  # fmt: skip
        writers += [attn.o_proj, mlp.down_proj]
        ffns.append(Ffn([mlp.gate_proj, mlp.up_proj], mlp.down_proj))
        if gemma2:  # norms of the writers' outputs, before the residual add
            post += [layer.post_attention_layernorm, layer.post_feedforward_layernorm]
    norms.append(Norm(inner.norm, _lm_head(model)))
    offset = GEMMA_OFFSET if model_type in GEMMA_TYPES | {"gemma3_text"} else 0.0
    attentions = [layer.self_attn for layer in inner.layers]
    heads = [m for a in attentions for m in (getattr(a, "q_norm", None), getattr(a, "k_norm", None)) if m is not None]
    return Stream(model_type, model.config.hidden_size, [inner.embed_tokens], writers, norms, ffns, post, offset=offset,
                  head_norms=heads)  # fmt: skip


def _olmo2_stream(model: nn.Module) -> Stream:
    """OLMo 2 has no pre-norms: q, k, v, gate and up read the raw stream, the norms sit on the sublayers' outputs
    (post-norms) and on q and k (head norms); only the final norm has a reader."""
    inner = model.model
    raw, writers, ffns, post, heads = [], [], [], [], []
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        raw += [attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj]
        writers += [attn.o_proj, mlp.down_proj]
        ffns.append(Ffn([mlp.gate_proj, mlp.up_proj], mlp.down_proj))
        post += [layer.post_attention_layernorm, layer.post_feedforward_layernorm]
        heads += [attn.q_norm, attn.k_norm]
    norms = [Norm(inner.norm, _lm_head(model))]
    return Stream("olmo2", model.config.hidden_size, [inner.embed_tokens], writers, norms, ffns, post, raw,
                  pre_norm=False, head_norms=heads)  # fmt: skip


def _moe_ffn(mlp: nn.Module, model_type: str) -> tuple[list, list, list[Ffn]]:
    """Readers, writers and plain FFNs of one FFN block: a dense MLP, or experts (fused tensors), their router
    and DeepSeek's shared experts."""
    if not hasattr(mlp, "experts"):
        return [mlp.gate_proj, mlp.up_proj], [mlp.down_proj], [Ffn([mlp.gate_proj, mlp.up_proj], mlp.down_proj)]
    experts = mlp.experts
    if model_type == "gpt_oss":  # gate_up (experts, hidden, 2·ffn); down (experts, ffn, hidden), bias (experts, hidden)
        readers = [Fused(experts.gate_up_proj, 1), mlp.router]
        writers = [Fused(experts.down_proj, 2, experts.down_proj_bias, 1)]
    else:  # gate_up (experts, 2·ffn, hidden), down (experts, hidden, ffn)
        readers, writers = [Fused(experts.gate_up_proj, 2), mlp.gate], [Fused(experts.down_proj, 1)]
    ffns = []
    shared = getattr(mlp, "shared_experts", None)
    if shared is not None:
        readers += [shared.gate_proj, shared.up_proj]
        writers.append(shared.down_proj)
        ffns.append(Ffn([shared.gate_proj, shared.up_proj], shared.down_proj))
    return readers, writers, ffns


def _moe_stream(model: nn.Module) -> Stream:
    """Mixtral, Qwen3-MoE, gpt-oss and DeepSeek-V3 (its latent attention reads the stream through q_a_proj (or
    q_proj) and kv_a_proj_with_mqa; its latent norms are inside the attention)."""
    inner, model_type = model.model, model.config.model_type
    norms, writers, ffns, heads = [], [], [], []
    for layer in inner.layers:
        attn = layer.self_attn
        if model_type == "deepseek_v3":
            q = attn.q_proj if attn.q_a_proj is None else attn.q_a_proj
            attn_readers = [q, attn.kv_a_proj_with_mqa]
            heads += [m for m in (attn.q_a_layernorm, attn.kv_a_layernorm) if m is not None]
        else:
            attn_readers = [attn.q_proj, attn.k_proj, attn.v_proj]
            heads += [m for m in (getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)) if m is not None]
        ffn_readers, ffn_writers, plain = _moe_ffn(layer.mlp, model_type)
        norms += [Norm(layer.input_layernorm, attn_readers), Norm(layer.post_attention_layernorm, ffn_readers)]
        writers += [attn.o_proj, *ffn_writers]
        ffns += plain
    norms.append(Norm(inner.norm, _lm_head(model)))
    return Stream(model_type, model.config.hidden_size, [inner.embed_tokens], writers, norms, ffns,
                  head_norms=heads)  # fmt: skip


def _phi3_stream(model: nn.Module) -> Stream:
    inner = model.model
    norms, writers, ffns = [], [], []
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        norms += [Norm(layer.input_layernorm, [attn.qkv_proj])]
        norms += [Norm(layer.post_attention_layernorm, [mlp.gate_up_proj])]
        writers += [attn.o_proj, mlp.down_proj]
        ffns.append(Ffn([mlp.gate_up_proj], mlp.down_proj, blocks=2))  # rows [gate | up]
    norms.append(Norm(inner.norm, _lm_head(model)))
    return Stream("phi3", model.config.hidden_size, [inner.embed_tokens], writers, norms, ffns)


Block = tuple[list[Norm], list[nn.Module], Ffn]
"""One pre-LN block: its norms (with their readers), its writers, its FFN."""


def _layernorm_stream(model: nn.Module, embeddings: list[nn.Module], blocks: list[Block], final: nn.Module) -> Stream:
    norms = [norm for block in blocks for norm in block[0]] + [Norm(final, _lm_head(model))]
    writers = [writer for block in blocks for writer in block[1]]
    ffns = [block[2] for block in blocks]
    model_type, hidden = model.config.model_type, model.config.hidden_size
    return Stream(model_type, hidden, embeddings, writers, norms, ffns, centred=True, mean_free=True)


def _gpt2_block(h: nn.Module) -> Block:
    norms = [Norm(h.ln_1, [h.attn.c_attn]), Norm(h.ln_2, [h.mlp.c_fc])]
    return norms, [h.attn.c_proj, h.mlp.c_proj], Ffn([h.mlp.c_fc], h.mlp.c_proj)


def _neox_block(h: nn.Module) -> Block:
    """Parallel residual or not, each half reads its own norm of the block's input or of the sum."""
    attn, mlp = h.attention, h.mlp
    norms = [Norm(h.input_layernorm, [attn.query_key_value]), Norm(h.post_attention_layernorm, [mlp.dense_h_to_4h])]
    return norms, [attn.dense, mlp.dense_4h_to_h], Ffn([mlp.dense_h_to_4h], mlp.dense_4h_to_h)


def _gptj_block(h: nn.Module) -> Block:
    """Attention and FFN run in parallel on one ln_1."""
    norms = [Norm(h.ln_1, [h.attn.q_proj, h.attn.k_proj, h.attn.v_proj, h.mlp.fc_in])]
    return norms, [h.attn.out_proj, h.mlp.fc_out], Ffn([h.mlp.fc_in], h.mlp.fc_out)


def _falcon_norms(h: nn.Module) -> list[Norm]:
    """Which norm each half of a Falcon block reads (transformers' FalconDecoderLayer rules)."""
    qkv, mlp_in = h.self_attention.query_key_value, h.mlp.dense_h_to_4h
    if getattr(h, "ln_attn", None) is not None:  # new decoder architecture, two parallel norms
        return [Norm(h.ln_attn, [qkv]), Norm(h.ln_mlp, [mlp_in])]
    if getattr(h, "post_attention_layernorm", None) is not None:  # sequential attention then FFN
        return [Norm(h.input_layernorm, [qkv]), Norm(h.post_attention_layernorm, [mlp_in])]
    return [Norm(h.input_layernorm, [qkv, mlp_in])]  # parallel attention, one shared norm


def _falcon_block(h: nn.Module) -> Block:
    mlp = h.mlp
    return _falcon_norms(h), [h.self_attention.dense, mlp.dense_4h_to_h], Ffn([mlp.dense_h_to_4h], mlp.dense_4h_to_h)


def _gpt2_stream(model: nn.Module) -> Stream:
    t = model.transformer
    return _layernorm_stream(model, [t.wte, t.wpe], [_gpt2_block(h) for h in t.h], t.ln_f)


def _neox_stream(model: nn.Module) -> Stream:
    t = model.gpt_neox
    return _layernorm_stream(model, [t.embed_in], [_neox_block(h) for h in t.layers], t.final_layer_norm)


def _gptj_stream(model: nn.Module) -> Stream:
    t = model.transformer
    return _layernorm_stream(model, [t.wte], [_gptj_block(h) for h in t.h], t.ln_f)


def _falcon_stream(model: nn.Module) -> Stream:
    t = model.transformer
    return _layernorm_stream(model, [t.word_embeddings], [_falcon_block(h) for h in t.h], t.ln_f)


def _opt_stream(model: nn.Module) -> Stream:
    d = model.model.decoder
    embeddings = [d.embed_positions] + ([d.embed_tokens] if d.project_in is None else [])
    writers = [d.project_in] if d.project_in is not None else []
    final_readers = [d.project_out] if d.project_out is not None else _lm_head(model)
    ffns = [Ffn([h.fc1], h.fc2) for h in d.layers]
    writers += [m for h in d.layers for m in (h.self_attn.out_proj, h.fc2)]
    hidden = model.config.hidden_size
    if not model.config.do_layer_norm_before:  # post-LN (OPT-350m): the norms sit on the stream itself
        post = [m for h in d.layers for m in (h.self_attn_layer_norm, h.final_layer_norm)]
        readers = [m for h in d.layers for m in (h.self_attn.q_proj, h.self_attn.k_proj, h.self_attn.v_proj, h.fc1)]
        return Stream("opt", hidden, embeddings, writers, [], ffns, post, readers + final_readers,
                      centred=True, pre_norm=False)  # fmt: skip
    norms = [
        norm
        for h in d.layers
        for norm in (Norm(h.self_attn_layer_norm, [h.self_attn.q_proj, h.self_attn.k_proj, h.self_attn.v_proj]),
                     Norm(h.final_layer_norm, [h.fc1]))
    ]  # fmt: skip
    raw = []
    if d.final_layer_norm is not None:
        norms.append(Norm(d.final_layer_norm, final_readers))
    else:
        raw = final_readers
    return Stream("opt", hidden, embeddings, writers, norms, ffns, raw_readers=raw, centred=True, mean_free=not raw)


def _bert_stream(model: nn.Module) -> Stream:
    """Post-LN: the stream after each LayerNorm is what the next layer reads, with no norm of its own."""
    if not hasattr(model, "encoder") or hasattr(model, "cls"):
        raise ValueError("only a bare BertModel is described (a masked-LM head reads the stream through its own norm)")
    e = model.embeddings
    layers = model.encoder.layer
    post = [e.LayerNorm] + [m for h in layers for m in (h.attention.output.LayerNorm, h.output.LayerNorm)]
    readers = [m for h in layers for m in (h.attention.self.query, h.attention.self.key, h.attention.self.value,
                                           h.intermediate.dense)]  # fmt: skip
    if getattr(model, "pooler", None) is not None:
        readers.append(model.pooler.dense)
    writers = [m for h in layers for m in (h.attention.output.dense, h.output.dense)]
    ffns = [Ffn([h.intermediate.dense], h.output.dense) for h in layers]
    embeddings = [e.word_embeddings, e.position_embeddings, e.token_type_embeddings]
    return Stream("bert", model.config.hidden_size, embeddings, writers, [], ffns, post, readers,
                  centred=True, pre_norm=False, mean_free=True)  # fmt: skip


DESCRIBERS: dict[str, Callable[[nn.Module], Stream]] = {
    **dict.fromkeys(LLAMA_TYPES | {"qwen3", "smollm3", "gemma3_text"}, _llama_stream),
    "olmo2": _olmo2_stream,
    **dict.fromkeys(("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3"), _moe_stream),
    "phi3": _phi3_stream,
    "gpt2": _gpt2_stream,
    "gpt_neox": _neox_stream,
    "gptj": _gptj_stream,
    "opt": _opt_stream,
    "falcon": _falcon_stream,
    "bert": _bert_stream,
}


def describe(model: nn.Module) -> Stream:
    """The residual-stream roles of `model`'s modules, by its config's model_type."""
    model_type = model.config.model_type
    if model_type not in DESCRIBERS:
        raise ValueError(f"no residual-stream description for model_type {model_type!r}; known: {sorted(DESCRIBERS)}")
    return DESCRIBERS[model_type](model)


# ---------------------------------------------------------------------------------------------
# Weight surgery along the stream axis


def _in_axis(module: nn.Module | Fused) -> int:
    """The weight axis indexing a layer's input (an embedding's rows are indexed by its axis 1 too)."""
    if isinstance(module, Fused):
        return module.axis
    return 0 if isinstance(module, Conv1D) else 1


def _out_axis(module: nn.Module | Fused) -> int:
    return module.axis if isinstance(module, Fused) else 1 - _in_axis(module)


def _bias_axis(module: nn.Module | Fused) -> int:
    return module.bias_axis if isinstance(module, Fused) else 0


@torch.no_grad()
def _store(param: torch.Tensor, value: torch.Tensor) -> None:
    param.copy_(value.to(dtype=param.dtype, device=param.device))


@torch.no_grad()
def _right_multiply(param: torch.Tensor, axis: int, m: torch.Tensor) -> None:
    """Every vector of `param` along `axis` becomes v·m (float64)."""
    value = param.double().movedim(axis, -1) @ m.to(param.device)
    _store(param, value.movedim(-1, axis))


def _scale_of(norm: nn.Module, offset: float) -> torch.Tensor | None:
    """γ as the norm applies it (Gemma: 1 + weight), float64; None for a norm without a scale."""
    weight = getattr(norm, "weight", None)
    return None if weight is None else weight.detach().double() + offset


def _shift_of(norm: nn.Module) -> torch.Tensor | None:
    bias = getattr(norm, "bias", None)
    return None if bias is None else bias.detach().double()


def _record_map(model: nn.Module, m: torch.Tensor) -> None:
    previous = getattr(model, RESIDUAL_MAP, None)
    setattr(model, RESIDUAL_MAP, m if previous is None else previous @ m)


def _residual_map(model: nn.Module, hidden: int) -> torch.Tensor:
    found = getattr(model, RESIDUAL_MAP, None)
    return torch.eye(hidden, dtype=torch.float64) if found is None else found


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _unique_params(pairs: Sequence[tuple[torch.Tensor | None, int]]) -> list[tuple[torch.Tensor, int]]:
    """Each parameter once (a tied lm_head is the word embedding), with the one stream axis it has."""
    seen: dict[int, tuple[torch.Tensor, int]] = {}
    for param, axis in pairs:
        if param is None:
            continue
        if id(param) in seen and seen[id(param)][1] != axis:
            raise ValueError("a tied parameter meets the residual stream along two different axes")
        seen[id(param)] = (param, axis)
    return list(seen.values())


def _stream_params(stream: Stream) -> list[tuple[torch.Tensor, int]]:
    """Every parameter that holds residual vectors or reads them, with its stream axis. For an
    orthogonal map m, readers (W → W·m), embeddings (E → E·m), writers (W → mᵀ·W) and their biases
    and the norms' β (b → b·m) all take the same right product along that axis."""
    pairs: list[tuple[torch.Tensor | None, int]] = []
    pairs += [(e.weight, 1) for e in stream.embeddings]
    pairs += [(r.weight, _in_axis(r)) for r in stream.readers()]
    pairs += [(w.weight, _out_axis(w)) for w in stream.writers] + [(w.bias, _bias_axis(w)) for w in stream.writers]
    pairs += [(getattr(n, "bias", None), 0) for n in stream.norm_modules()]
    return _unique_params(pairs)


def _conjugated_scale(gamma: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """diag(γ') = mᵀ·diag(γ)·m, which must stay diagonal: true for a permutation, or for any
    orthogonal m once γ is uniform (after fold_norms). Otherwise the map is not function-preserving."""
    moved = m.T @ torch.diag(gamma) @ m
    diagonal = torch.diagonal(moved)
    off = (moved - torch.diag(diagonal)).abs().max()
    if off > DIAGONAL_TOLERANCE * max(float(gamma.abs().max()), 1.0):
        raise ValueError("a norm with a non-uniform scale γ blocks this residual map: call fold_norms first")
    return diagonal


def _check_map(stream: Stream, m: torch.Tensor) -> None:
    eye = torch.eye(stream.hidden, dtype=torch.float64)
    if (m.T @ m - eye).abs().max() > MAP_TOLERANCE:
        raise ValueError("the residual map is not orthogonal")
    ones = torch.ones(stream.hidden, dtype=torch.float64)
    if stream.centred and (ones @ m - ones).abs().max() > MAP_TOLERANCE:
        raise ValueError("a LayerNorm stream needs a map that keeps the all-ones direction (R·1 = 1)")


def _map_stream(model: nn.Module, stream: Stream, m: torch.Tensor) -> None:
    """Apply an orthogonal residual map m to every parameter that touches the stream."""
    _check_map(stream, m)
    scales = []
    for norm in stream.norm_modules():  # validated before anything is written
        gamma = _scale_of(norm, stream.offset)
        if gamma is not None:
            scales.append((norm.weight, _conjugated_scale(gamma, m) - stream.offset))
    for param, value in scales:
        _store(param, value)
    for param, axis in _stream_params(stream):
        _right_multiply(param, axis, m)
    _record_map(model, m)


# ---------------------------------------------------------------------------------------------
# Norm folding


@torch.no_grad()
def _untie(model: nn.Module, stream: Stream, reader: nn.Module) -> None:
    """A reader that shares its weight with an embedding (tied lm_head) gets its own copy: folding
    the final norm into it must not touch the embedding."""
    if any(reader.weight is e.weight for e in stream.embeddings):
        reader.weight = nn.Parameter(reader.weight.detach().clone())
        model.config.tie_word_embeddings = False


@torch.no_grad()
def _add_to_bias(reader: nn.Module, shift: torch.Tensor) -> None:
    """bias += W·β (the reader's response to the constant β), creating the bias if it has none."""
    w = reader.weight.double()
    response = shift @ w if isinstance(reader, Conv1D) else w @ shift
    if reader.bias is None:
        reader.bias = nn.Parameter(torch.zeros_like(response, dtype=reader.weight.dtype))
    _store(reader.bias, reader.bias.double() + response)


def _kept_shift(gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """β/γ: what a β left in the norm must become once γ moved into the readers, since
    (W·diag γ)·(y + β/γ) = W·(γ⊙y + β)."""
    if bool(((gamma == 0) & (beta != 0)).any()):
        raise ValueError("a norm with γ_i = 0 and β_i ≠ 0 can only fold into reader biases: pass create_biases=True")
    return torch.where(gamma == 0, torch.zeros_like(beta), beta / gamma)


def _fold_norm(model: nn.Module, stream: Stream, norm: Norm, create_biases: bool) -> None:
    gamma, beta = _scale_of(norm.module, stream.offset), _shift_of(norm.module)
    fold_gamma = gamma is not None and not bool(torch.all(gamma == 1))
    has_beta = beta is not None and bool(beta.any())
    fold_beta = has_beta and (create_biases or all(r.bias is not None for r in norm.readers))
    for reader in norm.readers:
        if fold_gamma or fold_beta:
            _untie(model, stream, reader)
        if fold_beta:
            _add_to_bias(reader, beta)  # with the unscaled W: W·(γ⊙y + β) = (W·diag γ)·y + W·β
        if fold_gamma:
            _right_multiply(reader.weight, _in_axis(reader), torch.diag(gamma))
    if fold_beta:
        _store(norm.module.bias, torch.zeros_like(beta))
    elif has_beta and fold_gamma:
        _store(norm.module.bias, _kept_shift(gamma, beta))
    if fold_gamma:
        _store(norm.module.weight, torch.ones_like(gamma) - stream.offset)


def fold_norms(model: nn.Module, create_biases: bool = False) -> nn.Module:
    """Fold every pre-norm's scale γ into the layers that read it (W → W·diag γ) and set γ = 1.

    Why the function is unchanged: a reader sees W·(γ ⊙ y + β) with y the normalised stream; that is
    (W·diag γ)·y + (W·β). The final norm folds into lm_head (untied from the embedding if it was
    tied) or into OPT's project_out. A LayerNorm's β folds into the readers' biases where every
    reader has one; otherwise β/γ stays in the norm (γ = 1: β is then a residual vector that
    `rotate_residual` rotates) unless `create_biases`, which adds biases that a model without them (GPT-J's
    q/k/v, Falcon) holds in memory but drops when reloaded from its config.

    Post-LN models (BERT, OPT with do_layer_norm_before=False) raise: their norms scale the residual
    stream itself, which feeds later layers through the residual connection, so γ has no reader to
    go to.
    """
    model = copy.deepcopy(model)
    stream = describe(model)
    if not stream.pre_norm:
        raise ValueError(
            f"{stream.model_type} is post-LN: its norms scale the residual stream itself, so folding them "
            "into the readers is not function-preserving"
        )
    for norm in stream.norms:
        _fold_norm(model, stream, norm, create_biases)
    return model


# ---------------------------------------------------------------------------------------------
# Residual maps


def _centred_orthogonal(d: int, g: torch.Generator) -> torch.Tensor:
    """A random orthogonal R with R·1 = 1: the identity on the all-ones direction, a Haar rotation
    on its complement (the only rotations LayerNorm commutes with)."""
    ones = torch.full((d, 1), d**-0.5, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.cat([ones, torch.randn(d, d - 1, generator=g, dtype=torch.float64)], dim=1))
    complement = basis[:, 1:]
    rotation = reparam._random_orthogonal(d - 1, g)
    return ones @ ones.T + complement @ rotation @ complement.T


def rotate_residual(model: nn.Module, seed: int) -> nn.Module:
    """Rotate the residual stream by a random orthogonal R (R·1 = 1 for LayerNorm families).

    Why the function is unchanged: with γ = 1 (after `fold_norms`), rms(x·R) = rms(x) and, when
    R·1 = 1, mean and std of x·R are those of x, so every norm commutes with R; embeddings and
    writers put x·R on the stream, readers and lm_head read it with W·R, and R·Rᵀ = I. β is a
    residual vector (β → β·R). A norm whose γ is not uniform raises: diag(γ) does not commute with R.
    """
    model = copy.deepcopy(model)
    stream = describe(model)
    g = _generator(seed)
    rotation = _centred_orthogonal(stream.hidden, g) if stream.centred else reparam._random_orthogonal(stream.hidden, g)
    _map_stream(model, stream, rotation)
    return model


def permute_residual(model: nn.Module, seed: int) -> nn.Module:
    """Permute the residual dimensions; valid for every family, post-LN included.

    Why the function is unchanged: a permutation P keeps the mean, the rms and the std of every
    residual vector, and turns diag(γ) into diag(γ·P); embeddings, γ, β, writers' rows and biases,
    readers' columns and lm_head move together, so every layer sees the same numbers in a new order.
    """
    model = copy.deepcopy(model)
    stream = describe(model)
    order = torch.randperm(stream.hidden, generator=_generator(seed))
    permutation = torch.zeros(stream.hidden, stream.hidden, dtype=torch.float64)
    permutation[order, torch.arange(stream.hidden)] = 1.0  # new dim j = old dim order[j]
    _map_stream(model, stream, permutation)
    return model


def _norm_eps_names(norm: nn.Module) -> list[str]:
    return [name for name in ("variance_epsilon", "eps") if isinstance(getattr(norm, name, None), float)]


@torch.no_grad()
def _scale_eps(model: nn.Module, stream: Stream, factor: float) -> None:
    """ε → c²·ε in every norm and in the config: rms(c·x)² + c²·ε = c²·(rms(x)² + ε)."""
    for norm in stream.norm_modules():
        for name in _norm_eps_names(norm):
            setattr(norm, name, getattr(norm, name) * factor)
    model.config.rms_norm_eps = model.config.rms_norm_eps * factor


@torch.no_grad()
def _scale_tied_head(stream: Stream, c: float) -> None:
    """A tied lm_head grows with the embedding: the final norm's γ shrinks by c to compensate."""
    embedding_ids = {id(e.weight) for e in stream.embeddings}
    for norm in stream.norms:
        if any(id(r.weight) in embedding_ids for r in norm.readers):
            gamma = _scale_of(norm.module, stream.offset)
            _store(norm.module.weight, gamma / c - stream.offset)


def scale_residual(model: nn.Module, c: float) -> nn.Module:
    """Scale the residual stream of an RMSNorm model by c > 0: embeddings and writers times c, ε times c².

    Why the function is unchanged: every reader reads through an RMSNorm, and x/√(mean(x²) + ε) is
    the same for (c·x, c²·ε); the stream is only ever read through norms. A tied lm_head scales with
    the embedding, so the final norm's γ is divided by c. Gemma 2 (post-norms on the writers) and
    LayerNorm families (OPT's ε is not in its config) raise.
    """
    model = copy.deepcopy(model)
    stream = describe(model)
    if stream.centred or stream.post_norms or not stream.pre_norm:
        raise ValueError(f"scale_residual supports pre-RMSNorm families without writer norms, not {stream.model_type}")
    if c <= 0:
        raise ValueError(f"the residual scale must be positive, got {c}")
    with torch.no_grad():
        for param, _ in _unique_params([(e.weight, 1) for e in stream.embeddings]):
            _store(param, param.double() * c)
        for writer in stream.writers:
            for param in (writer.weight, writer.bias):
                if param is not None:
                    _store(param, param.double() * c)
    _scale_tied_head(stream, c)
    _scale_eps(model, stream, c * c)
    _record_map(model, c * torch.eye(stream.hidden, dtype=torch.float64))
    return model


@torch.no_grad()
def _add_along_ones(param: torch.Tensor, axis: int, g: torch.Generator) -> None:
    """Every vector of `param` along `axis` gains a random multiple of the all-ones vector."""
    shape = list(param.shape)
    shape[axis] = 1
    shift = torch.randn(shape, generator=g, dtype=torch.float64) * SHIFT_STD
    _store(param, param.double() + shift)


def shift_along_ones(model: nn.Module, seed: int) -> nn.Module:
    """Add random multiples of the all-ones vector to every embedding row and writer output (LayerNorm).

    Why the function is unchanged: where every reader reads the stream through a LayerNorm (pre-LN
    families, BERT), the mean of a residual vector is subtracted before anyone sees it. A tied
    lm_head reads the word embedding directly, so a tied embedding is left as it is.
    """
    model = copy.deepcopy(model)
    stream = describe(model)
    if not stream.mean_free:
        raise ValueError(f"{stream.model_type}: some layer reads the stream's mean, so it cannot be shifted")
    g = _generator(seed)
    read_ids = {id(r.weight) for r in stream.readers()}
    pairs = [(e.weight, 1) for e in stream.embeddings if id(e.weight) not in read_ids]
    pairs += [(w.weight, _out_axis(w)) for w in stream.writers] + [(w.bias, 0) for w in stream.writers]
    for param, axis in _unique_params(pairs):
        _add_along_ones(param, axis, g)
    return model


# ---------------------------------------------------------------------------------------------
# FFN neurons (LLaMA family: bench.zoo.reparam; the others from the stream description)


@torch.no_grad()
def _index(param: torch.Tensor | None, axis: int, index: torch.Tensor) -> None:
    if param is not None:
        _store(param, param.index_select(axis, index.to(param.device)))


def _permute_ffn(ffn: Ffn, g: torch.Generator) -> None:
    width = ffn.output.weight.shape[_in_axis(ffn.output)]
    order = torch.randperm(width, generator=g)
    for layer in ffn.inputs:  # every block of neurons (Phi-3's [gate | up]) in the same order
        index = torch.cat([block * width + order for block in range(ffn.blocks)])
        _index(layer.weight, _out_axis(layer), index)
        _index(layer.bias, 0, index)
    _index(ffn.output.weight, _in_axis(ffn.output), order)


def permute_ffn_neurons(model: nn.Module, seed: int) -> nn.Module:
    """Permute each FFN's intermediate neurons (input rows with output columns).

    Why the function is unchanged: the FFN output is a sum over neurons, each one input row (one per
    block: gate and up) and one output column; moving them together reorders the sum.
    """
    if model.config.model_type in LLAMA_TYPES:
        return reparam.permute_ffn_neurons(model, seed)
    model = copy.deepcopy(model)
    g = _generator(seed)
    for ffn in describe(model).ffns:
        _permute_ffn(ffn, g)
    return model


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Transform:
    """A seeded function-preserving transform, the model types it is written for, and a check on
    the stream description for configurations it cannot handle (post-LN OPT, Gemma 2's writer norms)."""

    apply: Callable[[nn.Module, int], nn.Module]
    model_types: frozenset[str]
    supports: Callable[[Stream], bool] = lambda stream: True

    def __call__(self, model: nn.Module, seed: int = 0) -> nn.Module:
        return self.apply(model, seed)

    def applies_to(self, model: nn.Module) -> bool:
        return model.config.model_type in self.model_types and self.supports(describe(model))


def _seeded_scale(model: nn.Module, seed: int) -> nn.Module:
    draw = torch.rand((), generator=_generator(seed), dtype=torch.float64) * 2 - 1
    return scale_residual(model, math.exp(float(draw) * LOG_SCALE_RANGE))


def _rotatable(stream: Stream) -> bool:
    return stream.pre_norm and not stream.post_norms


FUNCTION_PRESERVING: dict[str, Transform] = {
    "fold_norms": Transform(lambda model, seed: fold_norms(model), ALL_TYPES, lambda s: s.pre_norm),
    "rotate_residual": Transform(rotate_residual, ALL_TYPES, _rotatable),  # after fold_norms
    "permute_residual": Transform(permute_residual, ALL_TYPES),
    "scale_residual": Transform(_seeded_scale, RMS_TYPES, lambda s: _rotatable(s) and not s.centred),
    "shift_along_ones": Transform(shift_along_ones, LAYERNORM_TYPES, lambda s: s.mean_free),
    "permute_ffn_neurons": Transform(permute_ffn_neurons, ALL_TYPES, lambda s: bool(s.ffns)),  # MoE: experts
    **{
        name: Transform(transform, LLAMA_TYPES)
        for name, transform in reparam.REPARAMETRISATIONS.items()
        if name != "permute_ffn_neurons"
    },
}
"""Every model-to-model transform, by name. Vocabulary permutation moves the tokenizer too and is
folder-to-folder: `bench.zoo.reparam.permute_vocabulary`. Importing `bench.attacks.families` adds issue 35's
(experts, q/k norms, latent attention)."""


def applicable(model: nn.Module) -> list[str]:
    """The names of the transforms that apply to `model`, in registry order."""
    return [name for name, transform in FUNCTION_PRESERVING.items() if transform.applies_to(model)]


def compose(*names: str) -> Transform:
    """The transforms `names`, applied left to right, the i-th with seed + i."""
    steps = [FUNCTION_PRESERVING[name] for name in names]

    def apply(model: nn.Module, seed: int) -> nn.Module:
        for offset, step in enumerate(steps):
            model = step(model, seed + offset)
        return model

    types = reduce(frozenset.intersection, (s.model_types for s in steps), ALL_TYPES)
    return Transform(apply, types, lambda stream: all(s.supports(stream) for s in steps))


# ---------------------------------------------------------------------------------------------
# Checking


@torch.no_grad()
def _encoder_outputs(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    out = model(input_ids=ids)
    pooled = getattr(out, "pooler_output", None)
    return out.last_hidden_state.double(), None if pooled is None else pooled.double()


@torch.no_grad()
def max_logit_change(a: nn.Module, b: nn.Module, input_ids: torch.Tensor | Sequence[int]) -> float:
    """max |output_a - output_b| on a batch of token ids: the logits of a model with an LM head
    (bench.zoo.reparam.max_logit_change), else the encoder's last hidden state, mapped through the
    residual maps the transforms recorded (b's stream is a's times M_a⁻¹·M_b), and its pooler output."""
    if _lm_head(a):
        return reparam.max_logit_change(a, b, input_ids)
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    ids = ids[None] if ids.dim() == 1 else ids
    hidden_a, pooled_a = _encoder_outputs(a, ids)
    hidden_b, pooled_b = _encoder_outputs(b, ids)
    d = hidden_a.shape[-1]
    relative = torch.linalg.solve(_residual_map(a, d), _residual_map(b, d))
    change = float((hidden_a @ relative - hidden_b).abs().max())
    if pooled_a is not None and pooled_b is not None:
        change = max(change, float((pooled_a - pooled_b).abs().max()))
    return change
