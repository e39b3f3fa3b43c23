"""Issue 35's families: q/k norms (Qwen3, Gemma 3, OLMo 2), mixtures of experts (Mixtral, Qwen3-MoE, gpt-oss,
DeepSeek-V3) and multi-head latent attention (DeepSeek-V3); the canonical terms are argued in
docs/invariants.md."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.adapter import Matrix, config_int, name_prefix, norm_scales
from noseprint.models.checkpoint import Checkpoint
from noseprint.models.families_classic import LLAMA_PREFIXES, llama_shape
from noseprint.models.invariants import Routing
from noseprint.models.views import Gathered, Product, Scaled, Stacked, Zeros, row_square_sums

# Issue 35's families. The canonical terms of each are argued in docs/invariants.md ("Issue 35's families").
#
# qk-norm (Qwen3, Qwen3-MoE, Gemma 3: an RMSNorm over each head's q and k; OLMo 2: over the whole q and k):
# the norm's scale folds into Wq's and Wk's rows, and each head's block (OLMo 2: the whole matrix) is divided by
# its Frobenius norm read through γa, so that the rescalings the norm makes free (Wq_h → c·Wq_h) cancel.

QK_NORM_PER_HEAD = ("qwen3", "qwen3_moe", "gemma3_text", "gemma3")
QK_NORM_WHOLE = ("olmo2",)
GEMMA3_TYPES = ("gemma3_text", "gemma3")
GEMMA3_PREFIXES = ("model.language_model.", "language_model.model.", "model.", "")
"""Gemma 3 text models save `model.layers...`; the multimodal `gemma3` checkpoints (Gemma-3-27B) hold the text
decoder under `language_model.model.` (transformers 4) or `model.language_model.` (transformers 5)."""


def text_config(config: dict) -> dict:
    """The decoder's config: a multimodal Gemma 3 keeps it under `text_config`."""
    if config.get("model_type") == "gemma3":
        inner = config.get("text_config")
        if not isinstance(inner, dict):
            raise UsageError("config.json of a gemma3 model lacks its text_config")
        return {"model_type": "gemma3_text", **inner}
    return config


def qk_normed(matrix: Matrix, gamma: np.ndarray, groups: int, attn_norm: np.ndarray) -> Matrix:
    """diag(γ)·W with each of `groups` equal row blocks (heads, or one) divided by ‖W_block·diag(γa)‖_F: the
    canonical Wq or Wk of an attention whose q and k are RMS-normalised per block (γ tiled over the heads)."""
    rows = matrix.shape[0]
    squares = row_square_sums(matrix, attn_norm).reshape(groups, rows // groups).sum(axis=1)
    norms = np.sqrt(np.where(squares > 0, squares, 1.0))
    scale = np.tile(np.asarray(gamma, dtype=np.float64).reshape(-1), rows // gamma.size)
    return Scaled(matrix, scale / np.repeat(norms, rows // groups))


def _attention(checkpoint: Checkpoint, base: str, shape: LayerShape, attn_norm: np.ndarray) -> dict[str, Matrix]:
    """q, k, v, o of separate projections; q and k made canonical where the model normalises them."""
    config = text_config(checkpoint.config)
    model_type = config.get("model_type")
    roles: dict[str, Matrix] = {
        role: checkpoint.matrix(f"{base}self_attn.{role}_proj.weight") for role in ("q", "k", "v", "o")
    }
    if model_type in QK_NORM_PER_HEAD + QK_NORM_WHOLE:
        offset = 1.0 if model_type in GEMMA3_TYPES else 0.0
        per_head = model_type in QK_NORM_PER_HEAD
        for role, groups in (("q", shape.heads), ("k", shape.kv_heads)):
            gamma = checkpoint.tensor(f"{base}self_attn.{role}_norm.weight") + offset
            roles[role] = qk_normed(roles[role], gamma, groups if per_head else 1, attn_norm)
    return roles


def qk_norm_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    """Qwen3, Gemma 3 and OLMo 2: LLaMA's projections and gated FFN, with q/k norms (`qk_normed`). Gemma 3
    reads like Gemma 2 (γ = 1 + weight, the FFN's pre-norm; its post-norms are not read); OLMo 2 has no
    pre-norms at all (its norms sit on the sublayers' outputs), so its readers read the raw stream (γ = 1)."""
    config = text_config(checkpoint.config)
    model_type = config.get("model_type")
    prefixes = GEMMA3_PREFIXES if model_type in GEMMA3_TYPES else LLAMA_PREFIXES
    base = name_prefix(checkpoint, prefixes, "embed_tokens.weight") + f"layers.{index}."
    shape = llama_shape(config)
    if model_type in GEMMA3_TYPES:
        norms = norm_scales(checkpoint, f"{base}input_layernorm.weight", f"{base}pre_feedforward_layernorm.weight", 1.0)
    elif model_type in QK_NORM_WHOLE:
        norms = norm_scales(checkpoint, None, None)
    else:
        norms = norm_scales(checkpoint, f"{base}input_layernorm.weight", f"{base}post_attention_layernorm.weight")
    return {
        **_attention(checkpoint, base, shape, norms["attn_norm"]),
        "gate": checkpoint.matrix(f"{base}mlp.gate_proj.weight"),
        "up": checkpoint.matrix(f"{base}mlp.up_proj.weight"),
        "ffn_out": checkpoint.matrix(f"{base}mlp.down_proj.weight"),
        **norms,
    }


def qk_norm_shape(config: dict) -> LayerShape:
    return llama_shape(text_config(config))


# Mixtures of experts: the experts' gate, up and down stacked into one gated FFN (shared experts last), each
# neuron weighted by its expert's routing weight (`models.invariants.Routing`). A checkpoint stores them one
# tensor per expert (Mixtral's w1/w3/w2, Qwen3-MoE's and DeepSeek's gate/up/down_proj), or fused per layer
# (gpt-oss: gate_up_proj (experts, hidden, 2·ffn), gate and up interleaved column by column, down_proj
# (experts, ffn, hidden); transformers 5's in-memory layout (experts, 2·ffn, hidden), [gate | up]).


def _is_moe_layer(config: dict, index: int) -> bool:
    model_type = config.get("model_type")
    if model_type in ("mixtral", "gpt_oss"):
        return True
    if model_type == "qwen3_moe":
        step = config.get("decoder_sparse_step") or 1
        experts = _experts(config)
        return index not in (config.get("mlp_only_layers") or []) and experts > 0 and (index + 1) % step == 0
    if model_type == "deepseek_v3":
        return _experts(config) > 0 and index >= (config.get("first_k_dense_replace") or 0)
    return False


def _experts(config: dict) -> int:
    """The routed experts' count, by whichever name the config uses (transformers 5 saves num_local_experts for
    every family; Qwen's own configs say num_experts, DeepSeek's n_routed_experts)."""
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if config.get(key):
            return config_int(config, key)
    return 0


def layer_routing(config: dict, index: int) -> Routing | None:
    """How layer `index` routes its tokens, from config.json (None: a dense FFN)."""
    if not _is_moe_layer(config, index):
        return None
    model_type = config.get("model_type")
    if model_type in ("mixtral", "gpt_oss"):
        return Routing(_experts(config), config_int(config, "intermediate_size"))
    if model_type == "qwen3_moe":
        return Routing(_experts(config), config_int(config, "moe_intermediate_size"))
    expert_ffn = config_int(config, "moe_intermediate_size")
    shared = (config.get("n_shared_experts") or 0) * expert_ffn
    score = config.get("scoring_func") or "sigmoid"
    if score not in ("sigmoid", "softmax"):
        raise UsageError(f"DeepSeek router scoring_func {score!r} is not read (sigmoid or softmax)")
    scale = float(config.get("routed_scaling_factor") or 1.0)
    return Routing(_experts(config), expert_ffn, shared, score, scale)


def moe_shape(config: dict, index: int) -> LayerShape:
    """A layer's shape: a MoE layer's FFN is its experts' neurons stacked (shared experts too)."""
    attention = mla_shape(config) if config.get("model_type") == "deepseek_v3" else llama_shape(config)
    routing = layer_routing(config, index)
    if routing is None:
        return attention
    return LayerShape(attention.hidden, attention.heads, attention.kv_heads, attention.head_dim, routing.ffn, True)


def _fused_experts(checkpoint: Checkpoint, base: str, routing: Routing) -> tuple[list[Matrix], ...]:
    """Each expert's gate (ffn, hidden), up and down (hidden, ffn) out of the fused per-layer tensors."""
    gate_up, down = f"{base}experts.gate_up_proj", f"{base}experts.down_proj"
    if not checkpoint.has(gate_up) and checkpoint.has(gate_up + "_blocks"):
        raise UsageError(
            f"{gate_up} is stored in MXFP4 (gate_up_proj_blocks/_scales, gpt-oss's release format), which is not "
            "read yet: dequantise the experts to bf16 first (transformers: Mxfp4Config(dequantize=True))"
        )
    f = routing.expert_ffn
    interleaved = checkpoint.config.get("model_type") == "gpt_oss"  # (experts, hidden, 2·ffn), g0 u0 g1 u1 ...
    gates: list[Matrix] = []
    ups: list[Matrix] = []
    downs: list[Matrix] = []
    for expert in range(routing.experts):
        both, out = checkpoint.slab(gate_up, expert), checkpoint.slab(down, expert)
        if interleaved:  # columns g0 u0 g1 u1 ...: as a reader, the rows of its transpose
            gates.append(Gathered(both.T, np.arange(0, 2 * f, 2)))
            ups.append(Gathered(both.T, np.arange(1, 2 * f, 2)))
            downs.append(out.T)
        else:
            gates.append(both[:f])
            ups.append(both[f:])
            downs.append(out)
    return gates, ups, downs


def _slabs(checkpoint: Checkpoint, name: str, routing: Routing) -> list[Matrix]:
    return [checkpoint.slab(name, expert) for expert in range(routing.experts)]


EXPERT_NAMES = {
    "mixtral": ("block_sparse_moe.", "w1", "w3", "w2", "gate"),
    "qwen3_moe": ("mlp.", "gate_proj", "up_proj", "down_proj", "gate"),
    "deepseek_v3": ("mlp.", "gate_proj", "up_proj", "down_proj", "gate"),
    "gpt_oss": ("mlp.", "", "", "", "router"),
}
"""model_type -> (the MoE block's prefix, each expert's gate, up and down names, the router's name)."""


def moe_ffn(checkpoint: Checkpoint, base: str, routing: Routing) -> dict:
    """The stacked experts, the router (experts, hidden) and its bias (1, experts), and the routing."""
    model_type = checkpoint.config.get("model_type")
    block, gate, up, down, router = EXPERT_NAMES[str(model_type)]
    prefix = base + block
    if not checkpoint.has(f"{prefix}experts.0.{gate}.weight") and checkpoint.has(f"{base}mlp.experts.gate_up_proj"):
        prefix, router = base + "mlp.", "router" if model_type == "gpt_oss" else "gate"
    if checkpoint.has(f"{prefix}experts.gate_up_proj") or checkpoint.has(f"{prefix}experts.gate_up_proj_blocks"):
        gates, ups, downs = _fused_experts(checkpoint, prefix, routing)
    elif checkpoint.has(f"{prefix}experts.{gate}.weight"):  # merged per projection (GGUF's ffn_gate_exps, ...)
        gates, ups, downs = (_slabs(checkpoint, f"{prefix}experts.{name}.weight", routing) for name in (gate, up, down))
    else:
        expert = [f"{prefix}experts.{e}." for e in range(routing.experts)]
        gates = [checkpoint.matrix(f"{name}{gate}.weight") for name in expert]
        ups = [checkpoint.matrix(f"{name}{up}.weight") for name in expert]
        downs = [checkpoint.matrix(f"{name}{down}.weight") for name in expert]
    if routing.shared_ffn:
        shared = f"{prefix}shared_experts."
        gates.append(checkpoint.matrix(f"{shared}gate_proj.weight"))
        ups.append(checkpoint.matrix(f"{shared}up_proj.weight"))
        downs.append(checkpoint.matrix(f"{shared}down_proj.weight"))
    bias_name = f"{prefix}{router}.bias"
    bias = checkpoint.tensor(bias_name) if checkpoint.has(bias_name) else np.zeros(routing.experts)
    return {
        "gate": Stacked(tuple(gates), 0),
        "up": Stacked(tuple(ups), 0),
        "ffn_out": Stacked(tuple(downs), 1),
        "router": checkpoint.matrix(f"{prefix}{router}.weight"),
        "router_bias": np.asarray(bias, dtype=np.float64).reshape(1, -1),
        "routing": routing,
    }


def _dense_ffn(checkpoint: Checkpoint, base: str) -> dict[str, Matrix]:
    return {role: checkpoint.matrix(f"{base}mlp.{name}.weight")
            for role, name in (("gate", "gate_proj"), ("up", "up_proj"), ("ffn_out", "down_proj"))}  # fmt: skip


def moe_layer(checkpoint: Checkpoint, index: int) -> dict:
    """Mixtral, Qwen3-MoE, gpt-oss and DeepSeek-V3: attention (LLaMA's, with Qwen3's q/k norms, or DeepSeek's
    latent attention composed, `mla_attention`) and the FFN, stacked experts with their routing where the layer
    is a MoE layer (DeepSeek's first layers and Qwen3-MoE's `mlp_only_layers` are dense)."""
    config = checkpoint.config
    base = name_prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
    norms = norm_scales(checkpoint, f"{base}input_layernorm.weight", f"{base}post_attention_layernorm.weight")
    if config.get("model_type") == "deepseek_v3":
        attention = mla_attention(checkpoint, base, norms["attn_norm"])
    else:
        attention = _attention(checkpoint, base, llama_shape(config), norms["attn_norm"])
    routing = layer_routing(config, index)
    ffn = _dense_ffn(checkpoint, base) if routing is None else moe_ffn(checkpoint, base, routing)
    return {**attention, **ffn, **norms}


# Multi-head latent attention (DeepSeek-V3): q = q_b·norm(q_a·x) (or q_proj·x), per head [nope | rope];
# [c | k_rope] = kv_a·x, [k_nope | v] per head = kv_b·norm(c), k_rope shared by every head. The canonical maps
# compose the low-rank factors through the latent norms' scales, each latent reader divided by its Frobenius
# norm (the latent RMSNorm makes its scale free), and lay the heads out as LLaMA's: per head the q rows
# [nope | rope] against k rows [k_nope_h | k_rope], v padded with zero rows (and o with zero columns) to the
# q/k head width, so QK and VO are the same sums over heads the other families have.


def mla_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    qk = config_int(config, "qk_nope_head_dim") + config_int(config, "qk_rope_head_dim")
    width = max(qk, config_int(config, "v_head_dim"))
    return LayerShape(hidden, heads, heads, width, config_int(config, "intermediate_size"), gated=True)


def _latent_reader(matrix: Matrix, attn_norm: np.ndarray) -> float:
    """1 / ‖W·diag(γa)‖_F of a reader into a latent that an RMSNorm normalises."""
    norm = float(np.sqrt(row_square_sums(matrix, attn_norm).sum()))
    return 1.0 / norm if norm > 0 else 1.0


def _heads_layout(heads: int, width: int, rows_of: Callable[[int], np.ndarray], pad: int) -> np.ndarray:
    """Row indices of `heads` heads of `width` rows each: head h's rows `rows_of(h)`, then row `pad` (a zero row)
    repeated to fill the head."""
    out: list[np.ndarray] = []
    for head in range(heads):
        rows = np.asarray(rows_of(head))
        out += [rows, np.full(width - len(rows), pad)]
    return np.concatenate(out).astype(int)


def mla_attention(checkpoint: Checkpoint, base: str, attn_norm: np.ndarray) -> dict[str, Matrix]:
    config = checkpoint.config
    heads, nope = config_int(config, "num_attention_heads"), config_int(config, "qk_nope_head_dim")
    rope, v_dim, rank = (
        config_int(config, "qk_rope_head_dim"),
        config_int(config, "v_head_dim"),
        config_int(config, "kv_lora_rank"),
    )
    width = mla_shape(config).head_dim
    attn = base + "self_attn."
    if config.get("q_lora_rank"):
        q_a = checkpoint.matrix(f"{attn}q_a_proj.weight")
        q_gamma = checkpoint.tensor(f"{attn}q_a_layernorm.weight")
        q: Matrix = Product(checkpoint.matrix(f"{attn}q_b_proj.weight"), q_a, q_gamma, _latent_reader(q_a, attn_norm))
    else:
        q = checkpoint.matrix(f"{attn}q_proj.weight")
    kv_a = checkpoint.matrix(f"{attn}kv_a_proj_with_mqa.weight")
    latent, k_rope = kv_a[:rank], kv_a[rank:]
    kv_gamma = checkpoint.tensor(f"{attn}kv_a_layernorm.weight")
    kv = Product(checkpoint.matrix(f"{attn}kv_b_proj.weight"), latent, kv_gamma, _latent_reader(latent, attn_norm))
    hd, qk = nope + v_dim, nope + rope  # kv_b's rows per head: [k_nope | v]; q's: [nope | rope]
    zero = heads * hd + rope  # the zero row after [kv | k_rope]
    k_rows = _heads_layout(heads, width, lambda h: np.r_[h * hd : h * hd + nope, heads * hd : zero], zero)
    v_rows = _heads_layout(heads, width, lambda h: np.arange(h * hd + nope, (h + 1) * hd), zero)
    q_rows = _heads_layout(heads, width, lambda h: np.arange(h * qk, (h + 1) * qk), heads * qk)
    o_cols = _heads_layout(heads, width, lambda h: np.arange(h * v_dim, (h + 1) * v_dim), heads * v_dim)
    hidden = config_int(config, "hidden_size")
    o = checkpoint.matrix(f"{attn}o_proj.weight")
    keys_and_values = Stacked((kv, k_rope, Zeros(1, hidden)), 0)
    return {
        "q": Gathered(Stacked((q, Zeros(1, hidden)), 0), q_rows),
        "k": Gathered(keys_and_values, k_rows),
        "v": Gathered(keys_and_values, v_rows),
        "o": Gathered(Stacked((o, Zeros(hidden, 1)), 1), o_cols, 1),
    }
