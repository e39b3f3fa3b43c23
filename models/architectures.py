"""Architecture adapters: from a checkpoint's tensors to the weights HuRef's invariants use.

An adapter is chosen by `config.json`'s `model_type`, never by model name. It
states the shapes of one layer and returns that layer's matrices in the
Hugging Face `nn.Linear` convention (out_features, in_features):

    q, k, v: (heads*head_dim | kv_heads*head_dim, hidden)   o: (hidden, heads*head_dim)
    gate, up (gated FFN) or ffn_in: (ffn, hidden)          ffn_out: (hidden, ffn)
    attn_norm, ffn_norm: (1, hidden), the scale γ of the norm that the attention's and the FFN's
                         readers read (all ones where the model has none there)

The matrices may be `LazyMatrix` views (read block by block when the fingerprint streams them);
`Adapter.load_layer` gives arrays, `Adapter.lazy_layer` the views.

Biases (of layers and of LayerNorms) are ignored, as in HuRef: they only shift a reader's output, and the
invariants are products of weight matrices. The norm scales are not: folding them into the readers is a
free disguise unless the canonical form reads them (docs/invariants.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.checkpoint import Checkpoint, LazyMatrix
from noseprint.models.invariants import Routing
from noseprint.models.views import Gathered, Product, Scaled, Stacked, View, Zeros, row_square_sums

Matrix = np.ndarray | LazyMatrix | View


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]
    layer_shape: Callable[[dict], LayerShape]
    layer_count: Callable[[dict], int]
    embedding_name: Callable[[Checkpoint], str]
    layer_reader: Callable[[Checkpoint, int], dict[str, Matrix]]
    """One layer's roles, matrices as lazy views where the layout allows (fused per-head layouts: arrays)."""
    embedding_rows: Callable[[Checkpoint, list[int]], np.ndarray] | None = None
    """Overrides the plain row read (OPT projects its word embeddings to the hidden size)."""
    layer_norm: bool = False
    """LayerNorm family: every norm removes the residual's mean, so the canonical E is centred."""
    reads_previous_norm: Callable[[dict], bool] = lambda config: False
    """Post-LN: a layer's attention reads the previous layer's output norm (BERT, OPT-350m)."""
    shape_at: Callable[[dict, int], LayerShape] | None = None
    """Layer `index`'s shape where layers differ (DeepSeek-V3's dense first layers, Qwen3-MoE's mlp_only_layers)."""
    routing: Callable[[dict, int], Routing | None] = lambda config, index: None
    """How layer `index` routes tokens to its experts (None: a dense FFN), from config.json alone."""
    experts: bool = False
    """A mixture-of-experts family: its MoE layers' terms are fingerprinted, not proven (`MOE_PROOF_GAP`)."""

    def shape_of(self, config: dict, index: int) -> LayerShape:
        return self.layer_shape(config) if self.shape_at is None else self.shape_at(config, index)

    def proof_gap(self, config: dict, indices: list[int]) -> str | None:
        """Why the chunked proof cannot prove these layers' terms (None: it can)."""
        if any(self.routing(config, index) is not None for index in indices):
            return MOE_PROOF_GAP
        return None

    def lazy_layer(self, checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
        """The layer's roles without reading their matrices (each is read block by block later)."""
        return self.layer_reader(checkpoint, index)

    def load_layer(self, checkpoint: Checkpoint, index: int) -> dict[str, Any]:
        """The layer's roles as float64 arrays, every matrix read whole (a MoE layer's `Routing` as it is)."""
        return {
            role: value if isinstance(value, Routing) else np.asarray(value)
            for role, value in self.layer_reader(checkpoint, index).items()
        }

    def read_embedding(self, checkpoint: Checkpoint, ids: list[int]) -> np.ndarray:
        if self.embedding_rows is not None:
            return self.embedding_rows(checkpoint, ids)
        return checkpoint.rows(self.embedding_name(checkpoint), ids)


MOE_PROOF_GAP = (
    "the chunked proof does not implement a mixture-of-experts FFN: its circuits would need the router committed "
    "as a reader, the routing weights computed in-circuit (the RMS-normalised rows, their logits E·γf·Wrouterᵀ + b, "
    "a softmax or normalised sigmoid) and each FFN chunk's activations multiplied by its experts' weights before "
    "the down projection. `noseprint fingerprint` and `compare` read this model; `plan` costs the chunks the "
    "circuits would have"
)


def _need(config: dict, *keys: str, default=None):
    """First present key of `keys`, or a UsageError naming the missing field."""
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    if default is not None:
        return default
    raise UsageError(f"config.json lacks {' / '.join(keys)}, needed to read a {config.get('model_type')} model")


def _int(config: dict, *keys: str, default=None) -> int:
    value = _need(config, *keys, default=default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"config.json field {keys[0]} must be a positive integer, got {value!r}")
    return value


def _prefix(checkpoint: Checkpoint, candidates: tuple[str, ...], probe: str) -> str:
    """The tensor-name prefix this checkpoint uses (models saved with or without their LM head)."""
    for prefix in candidates:
        if checkpoint.has(prefix + probe):
            return prefix
    raise UsageError(f"checkpoint has no tensor named like {candidates[0]}{probe}")


def _norm(checkpoint: Checkpoint, name: str | None, hidden: int, offset: float = 0.0) -> np.ndarray:
    """A norm's scale γ as a (1, hidden) row; `name` None means the reader reads an un-normalised
    stream (γ = 1). `offset` is Gemma's: its RMSNorm scales by 1 + weight."""
    if name is None:
        return np.ones((1, hidden))
    return (checkpoint.tensor(name) + offset).reshape(1, -1)


def _norms(checkpoint: Checkpoint, attn: str | None, ffn: str | None, offset: float = 0.0) -> dict[str, np.ndarray]:
    hidden = _int(checkpoint.config, "hidden_size", "n_embd")
    return {"attn_norm": _norm(checkpoint, attn, hidden, offset), "ffn_norm": _norm(checkpoint, ffn, hidden, offset)}


# LLaMA family: llama, mistral, qwen2 (separate q/k/v/o projections, gated SiLU FFN, GQA).

LLAMA_PREFIXES = ("model.", "")
GEMMA_TYPES = ("gemma", "gemma2")
"""Gemma's RMSNorm multiplies by 1 + weight. Gemma 2's extra post-norms (on the attention's and the FFN's
outputs) are not read: the fingerprint sees its pre-norms only (docs/invariants.md)."""


def llama_shape(config: dict) -> LayerShape:
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    kv_heads = _int(config, "num_key_value_heads", default=heads)
    head_dim = _int(config, "head_dim", default=hidden // heads)
    if heads % kv_heads:
        raise UsageError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    return LayerShape(hidden, heads, kv_heads, head_dim, _int(config, "intermediate_size"), gated=True)


def llama_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
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
        **_norms(checkpoint, f"{base}input_layernorm.weight", f"{base}{ffn_norm}.weight", offset),
    }


# GPT-2: Conv1D weights stored (in, out), so transposed; fused c_attn holds [q | k | v] on its columns.

GPT2_PREFIXES = ("transformer.", "")


def gpt2_shape(config: dict) -> LayerShape:
    hidden = _int(config, "n_embd", "hidden_size")
    heads = _int(config, "n_head", "num_attention_heads")
    if hidden % heads:
        raise UsageError(f"n_embd {hidden} is not a multiple of n_head {heads}")
    ffn = _int(config, "n_inner", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def gpt2_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, GPT2_PREFIXES, "wte.weight") + f"h.{index}."
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
        **_norms(checkpoint, base + "ln_1.weight", base + "ln_2.weight"),
    }


# Phi-3: fused qkv_proj rows [q | k | v]; fused gate_up_proj rows [gate | up] (chunked in half).


def phi3_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
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
        **_norms(checkpoint, base + "input_layernorm.weight", base + "post_attention_layernorm.weight"),
    }


# GPT-NeoX: fused query_key_value interleaved per head, rows (heads, [q | k | v], head_dim).

NEOX_PREFIXES = ("gpt_neox.", "")


def neox_shape(config: dict) -> LayerShape:
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    ffn = _int(config, "intermediate_size", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def split_interleaved(qkv: np.ndarray, heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(heads*3*hd, d) with per-head [q | k | v] blocks -> q, k, v of (heads*hd, d) each."""
    per_head = qkv.reshape(heads, 3, qkv.shape[0] // (3 * heads), qkv.shape[1])
    return tuple(per_head[:, i].reshape(-1, qkv.shape[1]) for i in range(3))  # type: ignore[return-value]


def neox_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, NEOX_PREFIXES, "embed_in.weight") + f"layers.{index}."
    heads = neox_shape(checkpoint.config).heads
    q, k, v = split_interleaved(checkpoint.tensor(base + "attention.query_key_value.weight"), heads)
    return {
        "q": q,
        "k": k,
        "v": v,
        "o": checkpoint.matrix(base + "attention.dense.weight"),
        "ffn_in": checkpoint.matrix(base + "mlp.dense_h_to_4h.weight"),
        "ffn_out": checkpoint.matrix(base + "mlp.dense_4h_to_h.weight"),
        **_norms(checkpoint, base + "input_layernorm.weight", base + "post_attention_layernorm.weight"),
    }


# GPT-J: separate q/k/v/out projections, fc_in/fc_out.


def gptj_shape(config: dict) -> LayerShape:
    hidden = _int(config, "n_embd", "hidden_size")
    heads = _int(config, "n_head", "num_attention_heads")
    ffn = _int(config, "n_inner", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def gptj_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, GPT2_PREFIXES, "wte.weight") + f"h.{index}."
    names = {"q": "attn.q_proj", "k": "attn.k_proj", "v": "attn.v_proj", "o": "attn.out_proj",
             "ffn_in": "mlp.fc_in", "ffn_out": "mlp.fc_out"}  # fmt: skip
    return {  # GPT-J's attention and FFN run in parallel on one ln_1
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **_norms(checkpoint, base + "ln_1.weight", base + "ln_1.weight"),
    }


# OPT: separate projections, fc1/fc2; word embeddings may be narrower than hidden (project_in).

OPT_PREFIXES = ("model.decoder.", "decoder.", "")


def opt_shape(config: dict) -> LayerShape:
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    return LayerShape(hidden, heads, heads, hidden // heads, _int(config, "ffn_dim"), gated=False)


def opt_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, OPT_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj",
             "ffn_in": "fc1", "ffn_out": "fc2"}  # fmt: skip
    prefix = _prefix(checkpoint, OPT_PREFIXES, "embed_tokens.weight")
    attn: str | None
    if checkpoint.config.get("do_layer_norm_before", True):
        attn, ffn = f"{base}self_attn_layer_norm.weight", f"{base}final_layer_norm.weight"
    else:  # post-LN (OPT-350m): the attention reads the previous layer's output norm, layer 0 raw embeddings
        attn = f"{prefix}layers.{index - 1}.final_layer_norm.weight" if index > 0 else None
        ffn = f"{base}self_attn_layer_norm.weight"
    return {
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **_norms(checkpoint, attn, ffn),
    }


def opt_embedding(checkpoint: Checkpoint, ids: list[int]) -> np.ndarray:
    prefix = _prefix(checkpoint, OPT_PREFIXES, "embed_tokens.weight")
    rows = checkpoint.rows(prefix + "embed_tokens.weight", ids)
    if checkpoint.has(prefix + "project_in.weight"):
        rows = rows @ checkpoint.tensor(prefix + "project_in.weight").T  # the decoder's input is project_in(E)
    return rows


# Falcon: fused query_key_value in one of three layouts, chosen by the config.

FALCON_PREFIXES = ("transformer.", "")


def falcon_shape(config: dict) -> LayerShape:
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads", "n_head")
    if config.get("new_decoder_architecture"):
        kv_heads = _int(config, "num_kv_heads")
    elif config.get("multi_query", True):
        kv_heads = 1
    else:
        kv_heads = heads
    ffn = _int(config, "ffn_hidden_size", default=4 * hidden)
    return LayerShape(hidden, heads, kv_heads, hidden // heads, ffn, gated=False)


def falcon_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, FALCON_PREFIXES, "word_embeddings.weight") + f"h.{index}."
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
        **_norms(checkpoint, f"{base}{attn_norm}.weight", f"{base}{ffn_norm}.weight"),
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
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    ffn = _int(config, "intermediate_size")
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def bert_layer(checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
    base = _prefix(checkpoint, BERT_PREFIXES, "embeddings.word_embeddings.weight") + f"encoder.layer.{index}."
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}  # fmt: skip
    prefix = _prefix(checkpoint, BERT_PREFIXES, "embeddings.word_embeddings.weight")
    # post-LN: the attention reads the previous layer's output norm (layer 0: the embeddings' norm)
    attn = (
        f"{prefix}encoder.layer.{index - 1}.output.LayerNorm.weight"
        if index
        else f"{prefix}embeddings.LayerNorm.weight"
    )
    return {
        **{role: checkpoint.matrix(f"{base}{name}.weight") for role, name in names.items()},
        **_norms(checkpoint, attn, f"{base}attention.output.LayerNorm.weight"),
    }


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
    base = _prefix(checkpoint, prefixes, "embed_tokens.weight") + f"layers.{index}."
    shape = llama_shape(config)
    if model_type in GEMMA3_TYPES:
        norms = _norms(checkpoint, f"{base}input_layernorm.weight", f"{base}pre_feedforward_layernorm.weight", 1.0)
    elif model_type in QK_NORM_WHOLE:
        norms = _norms(checkpoint, None, None)
    else:
        norms = _norms(checkpoint, f"{base}input_layernorm.weight", f"{base}post_attention_layernorm.weight")
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
            return _int(config, key)
    return 0


def layer_routing(config: dict, index: int) -> Routing | None:
    """How layer `index` routes its tokens, from config.json (None: a dense FFN)."""
    if not _is_moe_layer(config, index):
        return None
    model_type = config.get("model_type")
    if model_type in ("mixtral", "gpt_oss"):
        return Routing(_experts(config), _int(config, "intermediate_size"))
    if model_type == "qwen3_moe":
        return Routing(_experts(config), _int(config, "moe_intermediate_size"))
    expert_ffn = _int(config, "moe_intermediate_size")
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
    base = _prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + f"layers.{index}."
    norms = _norms(checkpoint, f"{base}input_layernorm.weight", f"{base}post_attention_layernorm.weight")
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
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    qk = _int(config, "qk_nope_head_dim") + _int(config, "qk_rope_head_dim")
    width = max(qk, _int(config, "v_head_dim"))
    return LayerShape(hidden, heads, heads, width, _int(config, "intermediate_size"), gated=True)


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
    heads, nope = _int(config, "num_attention_heads"), _int(config, "qk_nope_head_dim")
    rope, v_dim, rank = _int(config, "qk_rope_head_dim"), _int(config, "v_head_dim"), _int(config, "kv_lora_rank")
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
    hidden = _int(config, "hidden_size")
    o = checkpoint.matrix(f"{attn}o_proj.weight")
    keys_and_values = Stacked((kv, k_rope, Zeros(1, hidden)), 0)
    return {
        "q": Gathered(Stacked((q, Zeros(1, hidden)), 0), q_rows),
        "k": Gathered(keys_and_values, k_rows),
        "v": Gathered(keys_and_values, v_rows),
        "o": Gathered(Stacked((o, Zeros(hidden, 1)), 1), o_cols, 1),
    }


def _layers(*keys: str) -> Callable[[dict], int]:
    return lambda config: _int(config, *keys)


def _llama_embedding(checkpoint: Checkpoint) -> str:
    return _prefix(checkpoint, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight"


def _moe_adapter(family: str) -> Adapter:
    return Adapter(
        family=family,
        model_types=(family,),
        layer_shape=lambda config: moe_shape(config, _int(config, "num_hidden_layers") - 1),
        layer_count=_layers("num_hidden_layers"),
        embedding_name=_llama_embedding,
        layer_reader=moe_layer,
        shape_at=moe_shape,
        routing=layer_routing,
        experts=True,
    )


ADAPTERS: tuple[Adapter, ...] = (
    Adapter(
        family="llama",
        model_types=("llama", "mistral", "qwen2", "gemma", "gemma2", "smollm3"),
        layer_shape=llama_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=llama_layer,
    ),
    Adapter(
        family="phi3",
        model_types=("phi3",),
        layer_shape=llama_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=phi3_layer,
    ),
    Adapter(
        family="qwen3",
        model_types=("qwen3",),
        layer_shape=qk_norm_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=_llama_embedding,
        layer_reader=qk_norm_layer,
    ),
    Adapter(
        family="gemma3",
        model_types=GEMMA3_TYPES,
        layer_shape=qk_norm_shape,
        layer_count=lambda config: _int(text_config(config), "num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, GEMMA3_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=qk_norm_layer,
    ),
    Adapter(
        family="olmo2",
        model_types=("olmo2",),
        layer_shape=qk_norm_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=_llama_embedding,
        layer_reader=qk_norm_layer,
    ),
    *(_moe_adapter(family) for family in ("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3")),
    Adapter(
        family="gpt2",
        model_types=("gpt2",),
        layer_shape=gpt2_shape,
        layer_count=_layers("n_layer", "num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, GPT2_PREFIXES, "wte.weight") + "wte.weight",
        layer_reader=gpt2_layer,
        layer_norm=True,
    ),
    Adapter(
        family="gpt_neox",
        model_types=("gpt_neox",),
        layer_shape=neox_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, NEOX_PREFIXES, "embed_in.weight") + "embed_in.weight",
        layer_reader=neox_layer,
        layer_norm=True,
    ),
    Adapter(
        family="gptj",
        model_types=("gptj",),
        layer_shape=gptj_shape,
        layer_count=_layers("n_layer", "num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, GPT2_PREFIXES, "wte.weight") + "wte.weight",
        layer_reader=gptj_layer,
        layer_norm=True,
    ),
    Adapter(
        family="opt",
        model_types=("opt",),
        layer_shape=opt_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, OPT_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=opt_layer,
        embedding_rows=opt_embedding,
        layer_norm=True,
        reads_previous_norm=lambda config: not config.get("do_layer_norm_before", True),
    ),
    Adapter(
        family="falcon",
        model_types=("falcon",),
        layer_shape=falcon_shape,
        layer_count=_layers("num_hidden_layers", "n_layer"),
        embedding_name=lambda ck: _prefix(ck, FALCON_PREFIXES, "word_embeddings.weight") + "word_embeddings.weight",
        layer_reader=falcon_layer,
        layer_norm=True,
    ),
    Adapter(
        family="bert",
        model_types=("bert",),
        layer_shape=bert_shape,
        layer_count=_layers("num_hidden_layers"),
        embedding_name=lambda ck: (
            _prefix(ck, BERT_PREFIXES, "embeddings.word_embeddings.weight") + "embeddings.word_embeddings.weight"
        ),
        layer_reader=bert_layer,
        layer_norm=True,
        reads_previous_norm=lambda config: True,
    ),
)


def supported_model_types() -> list[str]:
    return sorted(t for adapter in ADAPTERS for t in adapter.model_types)


NOT_ATTENTION: dict[str, tuple[str, str]] = {
    "qwen3_next": (
        "three of every four layers are Gated DeltaNet linear attention (the last-but-one among them), the fourth "
        "gated full attention, with a mixture of experts",
        "a canonical term for a Gated DeltaNet layer (its q/k/v/z projection in_proj_qkvz read with the short "
        "convolution and the a/b gates of in_proj_ba, its out_proj as the writer) and a rule choosing the layers "
        "(the last two full-attention layers, say), each with its own invariance argument",
    ),
    "falcon_h1": (
        "every layer runs attention and a Mamba-2 mixer side by side on one norm (plus the FFN), with muP multipliers",
        "a canonical term for the Mamba-2 branch (in_proj's x, B, C, z and dt blocks, the convolution, out_proj) added "
        "to the attention's, and the config's multipliers folded in; QK and VO alone would miss half of each layer",
    ),
    "kimi_linear": (
        "three of every four layers are Kimi Delta Attention (linear), the fourth multi-head latent attention, with "
        "a mixture of experts",
        "a canonical term for a Kimi Delta Attention layer (q/k/v with their short convolutions, the f/b gates, "
        "o_proj) and a rule choosing the layers; the latent attention and the experts are read already",
    ),
}
"""Families whose last layers are not (only) attention: model_type -> (what they are, what reading them needs)."""


def adapter_for(config: dict) -> Adapter:
    model_type = config.get("model_type")
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    if model_type in NOT_ATTENTION:
        layers, needed = NOT_ATTENTION[str(model_type)]
        raise UsageError(
            f"model_type={model_type!r} is not supported: the fingerprint reads its last two layers as attention and "
            f"an FFN, and in this family {layers}. Reading it would need {needed}"
        )
    raise UsageError(
        f"unsupported architecture model_type={model_type!r}; supported: {', '.join(supported_model_types())}"
    )


LAYER_NAME = r"(^|\.)(layers|h|layer)\.{index}\."
"""How every supported family names a layer's tensors: `model.layers.30.`, `transformer.h.30.`,
`encoder.layer.30.`."""


def needed_tensors(checkpoint: Checkpoint, adapter: Adapter, indices: list[int]) -> list[str]:
    """Every tensor the fingerprint of layers `indices` may read, from names alone (no shard need exist):
    the embedding (and OPT's `project_in`), all tensors of those layers, and for post-LN models the norms of
    the layer before (BERT's layer 0: the embeddings' norm). A superset by the layers' biases at most, which
    live in the same shards, so the files it names are exactly those the fingerprint opens."""
    layers = [re.compile(LAYER_NAME.format(index=i)) for i in indices]
    before = re.compile(LAYER_NAME.format(index=min(indices) - 1)) if min(indices) else re.compile(r"embeddings\.")
    previous = adapter.reads_previous_norm(checkpoint.config)
    wanted = {adapter.embedding_name(checkpoint)}
    for name in checkpoint.names:
        if any(p.search(name) for p in layers) or "project_in" in name:
            wanted.add(name)
        elif previous and before.search(name) and "norm" in name.lower():
            wanted.add(name)
    return sorted(wanted)


def check_layer(weights: Mapping[str, Matrix], shape: LayerShape, index: int) -> None:
    """Refuse tensors whose shapes disagree with config.json, before any circuit is built."""
    for role, expected, _ in shape.tensor_shapes():
        actual = tuple(weights[role].shape)
        if actual != expected:
            raise UsageError(f"layer {index} tensor {role} has shape {actual}, config.json implies {expected}")
