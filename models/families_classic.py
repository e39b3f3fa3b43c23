"""The families noseprint read first (LLaMA and its kin, GPT-2, Phi-3, GPT-NeoX, GPT-J, OPT, Falcon, BERT):
each one's layer shape and layer reader (`models.adapter`, the conventions)."""

from __future__ import annotations

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.adapter import Matrix, config_int, name_prefix, norm_scales
from noseprint.models.checkpoint import Checkpoint

# LLaMA family: llama, mistral, qwen2 (separate q/k/v/o projections, gated SiLU FFN, GQA).

LLAMA_PREFIXES = ("model.", "")
GEMMA_TYPES = ("gemma", "gemma2")
"""Gemma's RMSNorm multiplies by 1 + weight. Gemma 2's extra post-norms (on the attention's and the FFN's
outputs) are not read: the fingerprint sees its pre-norms only (docs/invariants.md)."""


def llama_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    kv_heads = config_int(config, "num_key_value_heads", default=heads)
    head_dim = config_int(config, "head_dim", default=hidden // heads)
    if heads % kv_heads:
        raise UsageError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    return LayerShape(hidden, heads, kv_heads, head_dim, config_int(config, "intermediate_size"), gated=True)


def llama_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
    names = {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "ffn_out": "mlp.down_proj",
    }
    model_type = checkpoint.config.get("model_type")
    offset = 1.0 if model_type in GEMMA_TYPES else 0.0
    ffn_norm = "pre_feedforward_layernorm" if model_type == "gemma2" else "post_attention_layernorm"
    return {
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **norm_scales(checkpoint, f"{base}input_layernorm.weight", f"{base}{ffn_norm}.weight", offset),
    }


# GPT-2: Conv1D weights stored (in, out), so transposed; fused c_attn holds [q | k | v] on its columns.

GPT2_PREFIXES = ("transformer.", "")


def gpt2_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "n_embd", "hidden_size")
    heads = config_int(config, "n_head", "num_attention_heads")
    if hidden % heads:
        raise UsageError(f"n_embd {hidden} is not a multiple of n_head {heads}")
    ffn = config_int(config, "n_inner", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def gpt2_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, GPT2_PREFIXES, "wte.weight") + f"h.{index}."
    c_attn = checkpoint.matrix(base + "attn.c_attn.weight")  # (hidden, 3*hidden)
    hidden = c_attn.shape[0]
    q, k, v = (c_attn[:, i * hidden : (i + 1) * hidden].T for i in range(3))
    return {
        "q": q,
        "k": k,
        "v": v,
        "o": checkpoint.matrix(base + "attn.c_proj.weight").T,
        "ffn_in": checkpoint.matrix(base + "mlp.c_fc.weight").T,
        "ffn_out": checkpoint.matrix(base + "mlp.c_proj.weight").T,
        **norm_scales(checkpoint, base + "ln_1.weight", base + "ln_2.weight"),
    }


# Phi-3: fused qkv_proj rows [q | k | v]; fused gate_up_proj rows [gate | up] (chunked in half).


def phi3_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
    shape = llama_shape(checkpoint.config)
    qkv = checkpoint.matrix(base + "self_attn.qkv_proj.weight")
    q, kv = shape.q_width, shape.kv_width
    gate_up = checkpoint.matrix(base + "mlp.gate_up_proj.weight")
    return {
        "q": qkv[:q],
        "k": qkv[q : q + kv],
        "v": qkv[q + kv :],
        "o": checkpoint.matrix(base + "self_attn.o_proj.weight"),
        "gate": gate_up[: shape.ffn],
        "up": gate_up[shape.ffn :],
        "ffn_out": checkpoint.matrix(base + "mlp.down_proj.weight"),
        **norm_scales(checkpoint, base + "input_layernorm.weight", base + "post_attention_layernorm.weight"),
    }


# GPT-NeoX: fused query_key_value interleaved per head, rows (heads, [q | k | v], head_dim).

NEOX_PREFIXES = ("gpt_neox.", "")


def neox_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    ffn = config_int(config, "intermediate_size", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def split_interleaved(qkv: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heads*3*hd, d) with per-head [q | k | v] blocks -> q, k, v of (heads*hd, d) each."""
    per_head = qkv.reshape(heads, 3, qkv.shape[0] // (3 * heads), qkv.shape[1])
    return tuple(per_head[:, i].reshape(-1, qkv.shape[1]) for i in range(3))  # type: ignore[return-value]


def neox_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, NEOX_PREFIXES, "embed_in.weight") + f"layers.{index}."
    heads = neox_shape(checkpoint.config).heads
    q, k, v = split_interleaved(checkpoint.tensor(base + "attention.query_key_value.weight"), heads)
    return {
        "q": q,
        "k": k,
        "v": v,
        "o": checkpoint.matrix(base + "attention.dense.weight"),
        "ffn_in": checkpoint.matrix(base + "mlp.dense_h_to_4h.weight"),
        "ffn_out": checkpoint.matrix(base + "mlp.dense_4h_to_h.weight"),
        **norm_scales(checkpoint, base + "input_layernorm.weight", base + "post_attention_layernorm.weight"),
    }


# GPT-J: separate q/k/v/out projections, fc_in/fc_out.


def gptj_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "n_embd", "hidden_size")
    heads = config_int(config, "n_head", "num_attention_heads")
    ffn = config_int(config, "n_inner", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def gptj_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, GPT2_PREFIXES, "wte.weight") + f"h.{index}."
    names = {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "o": "attn.out_proj",
             "ffn_in": "mlp.fc_in", "ffn_out": "mlp.fc_out"}  # fmt: skip
    return {  # GPT-J's attention and FFN run in parallel on one ln_1
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **norm_scales(checkpoint, base + "ln_1.weight", base + "ln_1.weight"),
    }


# OPT: separate projections, fc1/fc2; word embeddings may be narrower than hidden (project_in).

OPT_PREFIXES = ("model.decoder.", "decoder.", "")


def opt_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    return LayerShape(hidden, heads, heads, hidden // heads, config_int(config, "ffn_dim"), gated=False)


def opt_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, OPT_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj",
             "ffn_in": "fc1", "ffn_out": "fc2"}  # fmt: skip
    prefix = name_prefix(checkpoint, OPT_PREFIXES, "embed_tokens.weight")
    attn: str | None
    if checkpoint.config.get("do_layer_norm_before", True):
        attn, ffn = f"{base}self_attn_layer_norm.weight", f"{base}final_layer_norm.weight"
    else:  # post-LN (OPT-350m): the attention reads the previous layer's output norm, layer 0 raw embeddings
        attn = f"{prefix}layers.{index - 1}.final_layer_norm.weight" if index > 0 else None
        ffn = f"{base}self_attn_layer_norm.weight"
    return {
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **norm_scales(checkpoint, attn, ffn),
    }


def opt_embedding(checkpoint: Checkpoint, ids: list[int]) -> np.ndarray:
    prefix = name_prefix(checkpoint, OPT_PREFIXES, "embed_tokens.weight")
    rows = checkpoint.rows(prefix + "embed_tokens.weight", ids)
    if checkpoint.has(prefix + "project_in.weight"):
        rows = rows @ checkpoint.tensor(prefix + "project_in.weight").T  # the decoder's input is project_in(E)
    return rows


# Falcon: fused query_key_value in one of three layouts, chosen by the config.

FALCON_PREFIXES = ("transformer.", "")


def falcon_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads", "n_head")
    if config.get("new_decoder_architecture"):
        kv_heads = config_int(config, "num_kv_heads")
    elif config.get("multi_query", True):
        kv_heads = 1
    else:
        kv_heads = heads
    ffn = config_int(config, "ffn_hidden_size", default=4 * hidden)
    return LayerShape(hidden, heads, kv_heads, hidden // heads, ffn, gated=False)


def falcon_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, FALCON_PREFIXES, "word_embeddings.weight") + f"h.{index}."
    shape = falcon_shape(checkpoint.config)
    qkv = checkpoint.tensor(base + "self_attention.query_key_value.weight")
    attn_norm, ffn_norm = falcon_norm_names(checkpoint.config)
    hd, d = shape.head_dim, shape.hidden
    if checkpoint.config.get("new_decoder_architecture"):
        group = shape.heads // shape.kv_heads
        blocks = qkv.reshape(shape.kv_heads, group + 2, hd, d)
        q, k, v = blocks[:, :group].reshape(-1, d), blocks[:, group].reshape(-1, d), blocks[:, group + 1].reshape(-1, d)
    elif shape.kv_heads == 1:
        q, k, v = qkv[: shape.q_width], qkv[shape.q_width : shape.q_width + hd], qkv[shape.q_width + hd :]
    else:
        q, k, v = split_interleaved(qkv, shape.heads)
    return {
        "q": q,
        "k": k,
        "v": v,
        "o": checkpoint.matrix(base + "self_attention.dense.weight"),
        "ffn_in": checkpoint.matrix(base + "mlp.dense_h_to_4h.weight"),
        "ffn_out": checkpoint.matrix(base + "mlp.dense_4h_to_h.weight"),
        **norm_scales(checkpoint, f"{base}{attn_norm}.weight", f"{base}{ffn_norm}.weight"),
    }


def falcon_norm_names(config: dict) -> tuple[str, str]:
    """The norms Falcon's attention and FFN read, by transformers' FalconDecoderLayer rules."""
    parallel_norms = config.get("num_ln_in_parallel_attn")
    if parallel_norms is None and config.get("new_decoder_architecture"):
        parallel_norms = 2
    if not config.get("parallel_attn", True):
        return "input_layernorm", "post_attention_layernorm"
    if config.get("new_decoder_architecture") and parallel_norms == 2:
        return "ln_attn", "ln_mlp"
    return "input_layernorm", "input_layernorm"


# BERT (encoders such as all-MiniLM-L6-v2): attention.self.{query,key,value}, attention.output.dense,
# intermediate.dense, output.dense.

BERT_PREFIXES = ("bert.", "")


def bert_shape(config: dict) -> LayerShape:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    ffn = config_int(config, "intermediate_size")
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def bert_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = name_prefix(checkpoint, BERT_PREFIXES, "embeddings.word_embeddings.weight") + f"encoder.layer.{index}."
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}  # fmt: skip
    prefix = name_prefix(checkpoint, BERT_PREFIXES, "embeddings.word_embeddings.weight")
    # post-LN: the attention reads the previous layer's output norm (layer 0: the embeddings' norm)
    attn = (
        f"{prefix}encoder.layer.{index - 1}.output.LayerNorm.weight"
        if index
        else f"{prefix}embeddings.LayerNorm.weight"
    )
    return {
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **norm_scales(checkpoint, attn, f"{base}attention.output.LayerNorm.weight"),
    }


def llama_embedding(checkpoint: Checkpoint) -> str:
    return name_prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight"
