"""Function-preserving transforms that issue 35's families admit besides the residual stream's (`transforms`).

* Mixtures of experts (Mixtral, Qwen3-MoE, gpt-oss, DeepSeek-V3): permuting the experts with the router's rows
  (and its bias, DeepSeek's score-correction bias); permuting each expert's neurons; rescaling each expert
  neuron's up row against its down column (SiLU experts; gpt-oss's clamped `(up + 1)·glu` is not homogeneous).
* q/k norms (Qwen3, Qwen3-MoE, Gemma 3, OLMo 2): rescaling each head's q rows and k rows (the norm divides the
  scale out; OLMo 2's norm spans the whole projection, so there one factor for all of q and one for k), and
  trading the q norm's scale against the k norm's (γq·D, γk/D, D equal on the two dims of a rotary plane).
* Multi-head latent attention (DeepSeek-V3): permuting heads (q_b's rows, kv_b's rows, o_proj's columns),
  invertible maps of each head's non-rotary q/k space (q_b's rows by A, kv_b's key rows by A⁻ᵀ), rotations of
  each head's value space, folding the latent norms' scales into q_b and kv_b, rotating the latents once
  folded, and rescaling the latent readers (the latent norm divides the scale out; its ε rescaled with it).

Importing this module registers them in `transforms.FUNCTION_PRESERVING` (with the LLaMA re-parametrisations
extended to the families they are valid for), so `transforms.applicable` lists them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from bench.attacks import transforms
from bench.attacks.transforms import FUNCTION_PRESERVING, Transform, _generator, _store
from bench.zoo import reparam

MOE_TYPES = frozenset({"mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3"})
SILU_EXPERTS = MOE_TYPES - {"gpt_oss"}
QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3_text", "olmo2"})
MLA_TYPES = frozenset({"deepseek_v3"})
GEMMA3_OFFSET = 1.0
LOG_RANGE = math.log(4.0)
"""Seeded scales are drawn log-uniformly in [1/4, 4]."""


def _scales(shape: tuple[int, ...], g: torch.Generator, low: float = -1.0) -> torch.Tensor:
    """exp(u·log 4), u uniform in [low, 1)."""
    return torch.exp((torch.rand(shape, generator=g, dtype=torch.float64) * (1 - low) + low) * LOG_RANGE)


def _layers(model: nn.Module) -> nn.ModuleList:
    return model.model.layers


# ---------------------------------------------------------------------------------------------
# Experts


def _moe_blocks(model: nn.Module) -> Iterator[nn.Module]:
    for layer in _layers(model):
        if hasattr(layer.mlp, "experts"):
            yield layer.mlp


def _router(mlp: nn.Module) -> nn.Module:
    return mlp.router if hasattr(mlp, "router") else mlp.gate


@torch.no_grad()
def permute_experts(model: nn.Module, seed: int) -> nn.Module:
    """Permute each MoE layer's experts, with the router's rows (weight, bias, score-correction bias).

    Why the function is unchanged: the router scores every expert by its own row, the top-k and the weights are
    taken over the scores as a set, and the chosen experts' outputs are summed: renaming the experts together
    with their router rows changes no score, no choice and no sum. DeepSeek-V3 first keeps the best `topk_group`
    of `n_group` contiguous groups of experts, so there the groups are permuted and experts only within a group."""
    model = copy.deepcopy(model)
    g = _generator(seed)
    groups = getattr(model.config, "n_group", None) or 1
    for mlp in _moe_blocks(model):
        count = mlp.experts.gate_up_proj.shape[0]
        size = count // groups  # DeepSeek picks groups of experts first: groups move whole, experts within one
        slots = torch.randperm(groups, generator=g)
        order = torch.cat([old * size + torch.randperm(size, generator=g) for old in slots])
        router = _router(mlp)
        tensors = [*mlp.experts.parameters(), *router.parameters(), *router.buffers()]
        for tensor in tensors:
            if tensor.dim() >= 1 and tensor.shape[0] == count:
                _store(tensor, tensor.index_select(0, order))
    return model


def _interleaved(model: nn.Module) -> bool:
    """gpt-oss: gate_up (experts, hidden, 2·ffn), gate and up interleaved; down (experts, ffn, hidden)."""
    return model.config.model_type == "gpt_oss"


@torch.no_grad()
def permute_expert_neurons(model: nn.Module, seed: int) -> nn.Module:
    """Permute each expert's intermediate neurons (gate and up rows with down columns, biases with them).

    Why the function is unchanged: an expert's output is a sum over its neurons, each a gate row, an up row and
    a down column; moving the three together reorders the sum."""
    model = copy.deepcopy(model)
    g = _generator(seed)
    interleaved = _interleaved(model)
    for mlp in _moe_blocks(model):
        experts = mlp.experts
        count, ffn = experts.down_proj.shape[0], experts.gate_up_proj.shape[-1 if interleaved else 1] // 2
        for e in range(count):
            order = torch.randperm(ffn, generator=g)
            if interleaved:
                pairs = torch.stack([2 * order, 2 * order + 1], dim=1).reshape(-1)
                _store(experts.gate_up_proj[e], experts.gate_up_proj[e].index_select(1, pairs))
                _store(experts.gate_up_proj_bias[e], experts.gate_up_proj_bias[e].index_select(0, pairs))
                _store(experts.down_proj[e], experts.down_proj[e].index_select(0, order))
            else:
                rows = torch.cat([order, ffn + order])
                _store(experts.gate_up_proj[e], experts.gate_up_proj[e].index_select(0, rows))
                _store(experts.down_proj[e], experts.down_proj[e].index_select(1, order))
    return model


@torch.no_grad()
def scale_expert_up(model: nn.Module, seed: int) -> nn.Module:
    """Scale each expert neuron's up row by α and its down column by 1/α (SiLU-gated experts).

    Why the function is unchanged: the neuron outputs silu(gate·x)·(up·x), linear in its up row, read only by
    its down column."""
    if _interleaved(model):
        raise ValueError("gpt-oss's experts compute (clamp(up) + 1)·glu: an up row cannot be rescaled")
    model = copy.deepcopy(model)
    g = _generator(seed)
    for mlp in _moe_blocks(model):
        experts = mlp.experts
        count, ffn = experts.down_proj.shape[0], experts.gate_up_proj.shape[1] // 2
        alpha = _scales((count, ffn), g)
        gate_up = experts.gate_up_proj.double().clone()
        gate_up[:, ffn:] *= alpha[:, :, None]
        _store(experts.gate_up_proj, gate_up)
        _store(experts.down_proj, experts.down_proj.double() / alpha[:, None, :])
    return model


# ---------------------------------------------------------------------------------------------
# q/k norms


def _norm_offset(model: nn.Module) -> float:
    return GEMMA3_OFFSET if model.config.model_type == "gemma3_text" else 0.0


def _whole_width(attn: nn.Module) -> bool:
    """OLMo 2: the q norm spans the whole q projection, not one head."""
    return attn.q_norm.weight.numel() == attn.q_proj.out_features


@torch.no_grad()
def _scale_rows(linear: nn.Linear, factors: torch.Tensor) -> None:
    _store(linear.weight, linear.weight.double() * factors[:, None])
    if linear.bias is not None:
        _store(linear.bias, linear.bias.double() * factors)


@torch.no_grad()
def scale_qk_heads(model: nn.Module, seed: int) -> nn.Module:
    """Scale each head's q rows by c_h and each K head's rows by c'_j (c > 0); OLMo 2: all of q by one c, all of
    k by one c'.

    Why the function is unchanged: the q/k norm divides each head's q (k) by its RMS, which a positive factor
    multiplies by the same factor (up to ε: the norm computes √(mean(q²) + ε), so the logits move by ~ε/mean(q²);
    c is drawn in [1, 4], so that the move only shrinks)."""
    model = copy.deepcopy(model)
    shape, g = reparam.attention_shape(model), _generator(seed)
    hd = shape.head_dim
    for layer in _layers(model):
        attn = layer.self_attn
        whole = _whole_width(attn)
        q = _scales((1 if whole else shape.heads,), g, 0.0).repeat_interleave(shape.heads * hd if whole else hd)
        k = _scales((1 if whole else shape.kv_heads,), g, 0.0).repeat_interleave(shape.kv_heads * hd if whole else hd)
        _scale_rows(attn.q_proj, q)
        _scale_rows(attn.k_proj, k)
        if whole:  # one factor per norm: its ε follows exactly, rms(c·q)² + c²·ε = c²·(rms(q)² + ε)
            attn.q_norm.variance_epsilon *= float(q[0]) ** 2
            attn.k_norm.variance_epsilon *= float(k[0]) ** 2
    return model


@torch.no_grad()
def swap_qk_norm_scales(model: nn.Module, seed: int) -> nn.Module:
    """γq → γq·D, γk → γk/D, D drawn per dim (per K head and dim for OLMo 2's whole-width norms, the same for
    the query heads of a group), equal on the two dims of each rotary plane (i, i + head_dim/2).

    Why the function is unchanged: a score is Σ_i rope(q̂·γq)_i·rope(k̂·γk)_i; D is a scalar on each rotary
    plane, so it commutes with the rotation, and D_i·(1/D_i) = 1."""
    model = copy.deepcopy(model)
    shape, g = reparam.attention_shape(model), _generator(seed)
    offset, half = _norm_offset(model), shape.head_dim // 2
    for layer in _layers(model):
        attn = layer.self_attn
        whole = _whole_width(attn)
        d = _scales((shape.kv_heads if whole else 1, half), g).repeat(1, 2)  # (kv or 1, head_dim), planes equal
        k_factor = d.reshape(-1)
        q_factor = d.repeat_interleave(shape.group, dim=0).reshape(-1) if whole else k_factor
        _store(attn.q_norm.weight, (attn.q_norm.weight.double() + offset) * q_factor - offset)
        _store(attn.k_norm.weight, (attn.k_norm.weight.double() + offset) / k_factor - offset)
    return model


# ---------------------------------------------------------------------------------------------
# Multi-head latent attention


def _mla(model: nn.Module) -> tuple[int, int, int, int]:
    c = model.config
    return c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim


def _q_out(attn: nn.Module) -> nn.Linear:
    return attn.q_proj if attn.q_b_proj is None else attn.q_b_proj


@torch.no_grad()
def _map_blocks(weight: torch.Tensor, starts: list[int], mats: torch.Tensor, rows: bool) -> None:
    """Rows (or columns) [s, s + m) of `weight` for each start s become mats[i] @ rows (cols @ mats[i])."""
    value = weight.double().clone()
    size = mats.shape[-1]
    for start, mat in zip(starts, mats, strict=True):
        block = slice(start, start + size)
        if rows:
            value[block] = mat @ value[block]
        else:
            value[:, block] = value[:, block] @ mat
    _store(weight, value)


@torch.no_grad()
def permute_mla_heads(model: nn.Module, seed: int) -> nn.Module:
    """Permute the heads: q's rows per head ([nope | rope]), kv_b's rows per head ([k_nope | v]) and o_proj's
    columns per head move together. The shared rotary key needs no move."""
    model = copy.deepcopy(model)
    heads, nope, rope, v_dim = _mla(model)
    g = _generator(seed)
    for layer in _layers(model):
        attn = layer.self_attn
        order = torch.randperm(heads, generator=g)
        for linear, width, axis in ((_q_out(attn), nope + rope, 0), (attn.kv_b_proj, nope + v_dim, 0),
                                    (attn.o_proj, v_dim, 1)):  # fmt: skip
            index = (order[:, None] * width + torch.arange(width)).reshape(-1)
            _store(linear.weight, linear.weight.index_select(axis, index))
    return model


@torch.no_grad()
def map_mla_nope(model: nn.Module, seed: int) -> nn.Module:
    """An invertible map A_h of each head's non-rotary q/k space: q_nope rows → A_h·rows, k_nope rows of kv_b →
    A_h⁻ᵀ·rows. Why: q_nope·k_nope = (A q)ᵀ(A⁻ᵀ k) = qᵀk, and these dims carry no rotary embedding."""
    model = copy.deepcopy(model)
    heads, nope, rope, v_dim = _mla(model)
    g = _generator(seed)
    for layer in _layers(model):
        attn = layer.self_attn
        mats = torch.randn(heads, nope, nope, generator=g, dtype=torch.float64) / math.sqrt(nope)
        mats = mats + torch.eye(nope, dtype=torch.float64)
        _map_blocks(_q_out(attn).weight, [h * (nope + rope) for h in range(heads)], mats, rows=True)
        _map_blocks(attn.kv_b_proj.weight, [h * (nope + v_dim) for h in range(heads)],
                    torch.linalg.inv(mats).transpose(1, 2), rows=True)  # fmt: skip
    return model


@torch.no_grad()
def rotate_mla_values(model: nn.Module, seed: int) -> nn.Module:
    """A rotation R_h of each head's value space: its v rows of kv_b → R_h·rows, its o_proj columns → cols·R_hᵀ."""
    model = copy.deepcopy(model)
    heads, nope, _, v_dim = _mla(model)
    g = _generator(seed)
    for layer in _layers(model):
        attn = layer.self_attn
        mats = torch.stack([reparam._random_orthogonal(v_dim, g) for _ in range(heads)])
        _map_blocks(attn.kv_b_proj.weight, [h * (nope + v_dim) + nope for h in range(heads)], mats, rows=True)
        _map_blocks(attn.o_proj.weight, [h * v_dim for h in range(heads)], mats.transpose(1, 2), rows=False)
    return model


def _latents(attn: nn.Module) -> list[tuple[nn.Module, torch.Tensor, nn.Module, int]]:
    """(latent norm, the latent reader's weight rows, the latent's reader, rows) for q (if low-rank) and kv."""
    out = []
    if attn.q_a_proj is not None:
        out.append((attn.q_a_layernorm, attn.q_a_proj.weight, attn.q_b_proj, attn.q_a_proj.out_features))
    kv_rank = attn.kv_a_layernorm.weight.numel()
    out.append((attn.kv_a_layernorm, attn.kv_a_proj_with_mqa.weight, attn.kv_b_proj, kv_rank))
    return out


@torch.no_grad()
def fold_latent_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move each latent RMSNorm's scale into the latent's reader (q_b, kv_b: columns × γ), γ → 1."""
    model = copy.deepcopy(model)
    for layer in _layers(model):
        for norm, _, reader, _ in _latents(layer.self_attn):
            gamma = norm.weight.double()
            _store(reader.weight, reader.weight.double() * gamma[None, :])
            _store(norm.weight, torch.ones_like(gamma))
    return model


@torch.no_grad()
def rotate_latents(model: nn.Module, seed: int) -> nn.Module:
    """Fold the latent norms, then rotate each latent by a random orthogonal R: the latent's writer rows
    (q_a, kv_a's first kv_lora_rank rows) → R·rows, its reader's columns (q_b, kv_b) → cols·Rᵀ.
    Why: with γ = 1 the latent norm commutes with R (rms(R·c) = rms(c))."""
    model = fold_latent_norms(model)
    g = _generator(seed)
    for layer in _layers(model):
        for _, writer, reader, rank in _latents(layer.self_attn):
            rotation = reparam._random_orthogonal(rank, g)
            _map_blocks(writer, [0], rotation[None], rows=True)
            _map_blocks(reader.weight, [0], rotation.T[None], rows=False)
    return model


@torch.no_grad()
def scale_latents(model: nn.Module, seed: int) -> nn.Module:
    """Scale each latent's writer rows by c > 0 and its norm's ε by c²: rms(c·x)² + c²·ε = c²·(rms(x)² + ε)."""
    model = copy.deepcopy(model)
    g = _generator(seed)
    for layer in _layers(model):
        for norm, writer, _, rank in _latents(layer.self_attn):
            c = float(_scales((1,), g))
            value = writer.double().clone()
            value[:rank] *= c
            _store(writer, value)
            norm.variance_epsilon = norm.variance_epsilon * c * c
    return model


# ---------------------------------------------------------------------------------------------
# Registration


def _dispatch(mla: Callable[[nn.Module, int], nn.Module], other: Callable[[nn.Module, int], nn.Module]):
    return lambda model, seed: (mla if model.config.model_type in MLA_TYPES else other)(model, seed)


ATTENTION_REPARAMS = frozenset({"qwen3", "smollm3", "gemma3_text", "olmo2", "mixtral", "qwen3_moe", "gpt_oss"})
"""Separate q/k/v/o projections: the LLaMA head and value transforms apply (OLMo 2's whole-width q/k norms and
gpt-oss's sinks move with the heads: `reparam._permute_head_extras`)."""
PLAIN_ROPE = frozenset({"smollm3", "mixtral", "gpt_oss"})
"""No q/k norm: the rotary-plane maps of q and k (`scale_qk`, `rotate_qk`) apply (SmolLM3's NoPE layers too)."""
DENSE_FFN = frozenset({"qwen3", "smollm3", "gemma3_text", "olmo2"})


def _extend(name: str, types: frozenset[str], apply: Callable[[nn.Module, int], nn.Module] | None = None) -> None:
    old = FUNCTION_PRESERVING[name]
    FUNCTION_PRESERVING[name] = Transform(apply or old.apply, old.model_types | types, old.supports)


def register() -> None:
    """Add issue 35's transforms to the registry and extend the LLaMA ones to the families they are valid for."""
    _extend("permute_heads", ATTENTION_REPARAMS | MLA_TYPES, _dispatch(permute_mla_heads, reparam.permute_heads))
    _extend("rotate_value_space", ATTENTION_REPARAMS | MLA_TYPES,
            _dispatch(rotate_mla_values, reparam.rotate_value_space))  # fmt: skip
    _extend("permute_value_units", ATTENTION_REPARAMS)
    _extend("scale_qk", PLAIN_ROPE)
    _extend("rotate_qk", PLAIN_ROPE)
    _extend("scale_ffn_up", DENSE_FFN)
    FUNCTION_PRESERVING.update(
        {
            "permute_experts": Transform(permute_experts, MOE_TYPES),
            "permute_expert_neurons": Transform(permute_expert_neurons, MOE_TYPES),
            "scale_expert_up": Transform(scale_expert_up, SILU_EXPERTS),
            "scale_qk_heads": Transform(scale_qk_heads, QK_NORM_TYPES),
            "swap_qk_norm_scales": Transform(swap_qk_norm_scales, QK_NORM_TYPES),
            "fold_latent_norms": Transform(fold_latent_norms, MLA_TYPES),
            "rotate_latents": Transform(rotate_latents, MLA_TYPES),
            "scale_latents": Transform(scale_latents, MLA_TYPES),
            "map_mla_nope": Transform(map_mla_nope, MLA_TYPES),
        }
    )


if "permute_experts" not in FUNCTION_PRESERVING:
    register()

__all__ = ["register", "transforms"]
