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

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.checkpoint import Checkpoint, LazyMatrix

Matrix = np.ndarray | LazyMatrix


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

    def lazy_layer(self, checkpoint: Checkpoint, index: int) -> dict[str, Matrix]:
        """The layer's roles without reading their matrices (each is read block by block later)."""
        return self.layer_reader(checkpoint, index)

    def load_layer(self, checkpoint: Checkpoint, index: int) -> dict[str, np.ndarray]:
        """The layer's roles as float64 arrays, every matrix read whole."""
        return {role: np.asarray(value) for role, value in self.layer_reader(checkpoint, index).items()}

    def read_embedding(self, checkpoint: Checkpoint, ids: list[int]) -> np.ndarray:
        if self.embedding_rows is not None:
            return self.embedding_rows(checkpoint, ids)
        return checkpoint.rows(self.embedding_name(checkpoint), ids)


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


def _layers(*keys: str) -> Callable[[dict], int]:
    return lambda config: _int(config, *keys)


ADAPTERS: tuple[Adapter, ...] = (
    Adapter(
        family="llama",
        model_types=("llama", "mistral", "qwen2", "gemma", "gemma2"),
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


def adapter_for(config: dict) -> Adapter:
    model_type = config.get("model_type")
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
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
