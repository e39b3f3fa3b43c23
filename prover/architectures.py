"""Architecture adapters: from a checkpoint's tensors to the weights HuRef's invariants use.

An adapter is chosen by `config.json`'s `model_type`, never by model name. It
states the shapes of one layer and returns that layer's matrices in the
Hugging Face `nn.Linear` convention (out_features, in_features):

    q, k, v: (heads*head_dim | kv_heads*head_dim, hidden)   o: (hidden, heads*head_dim)
    gate, up (gated FFN) or ffn_in: (ffn, hidden)          ffn_out: (hidden, ffn)

Biases are ignored, as in HuRef: the invariants are products of weight matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from circuits.layout import LayerShape
from noseprint.errors import UsageError
from prover.checkpoint import Checkpoint


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]
    layer_shape: Callable[[dict], LayerShape]
    layer_count: Callable[[dict], int]
    embedding_name: Callable[[Checkpoint], str]
    load_layer: Callable[[Checkpoint, int], dict[str, np.ndarray]]


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


# LLaMA family: llama, mistral, qwen2 (separate q/k/v/o projections, gated SiLU FFN, GQA).

LLAMA_PREFIXES = ("model.", "")


def llama_shape(config: dict) -> LayerShape:
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    kv_heads = _int(config, "num_key_value_heads", default=heads)
    head_dim = _int(config, "head_dim", default=hidden // heads)
    if heads % kv_heads:
        raise UsageError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    return LayerShape(hidden, heads, kv_heads, head_dim, _int(config, "intermediate_size"), gated=True)


def llama_layer(checkpoint: Checkpoint, index: int) -> dict[str, np.ndarray]:
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
    return {role: checkpoint.tensor(f"{base}{name}.weight") for role, name in names.items()}


# GPT-2: Conv1D weights stored (in, out), so transposed; fused c_attn holds [q | k | v] on its columns.

GPT2_PREFIXES = ("transformer.", "")


def gpt2_shape(config: dict) -> LayerShape:
    hidden = _int(config, "n_embd", "hidden_size")
    heads = _int(config, "n_head", "num_attention_heads")
    if hidden % heads:
        raise UsageError(f"n_embd {hidden} is not a multiple of n_head {heads}")
    ffn = _int(config, "n_inner", default=4 * hidden)
    return LayerShape(hidden, heads, heads, hidden // heads, ffn, gated=False)


def gpt2_layer(checkpoint: Checkpoint, index: int) -> dict[str, np.ndarray]:
    base = _prefix(checkpoint, GPT2_PREFIXES, "wte.weight") + f"h.{index}."
    c_attn = checkpoint.tensor(base + "attn.c_attn.weight")  # (hidden, 3*hidden)
    hidden = c_attn.shape[0]
    q, k, v = (c_attn[:, i * hidden : (i + 1) * hidden].T for i in range(3))
    return {
        "q": q,
        "k": k,
        "v": v,
        "o": checkpoint.tensor(base + "attn.c_proj.weight").T,
        "ffn_in": checkpoint.tensor(base + "mlp.c_fc.weight").T,
        "ffn_out": checkpoint.tensor(base + "mlp.c_proj.weight").T,
    }


ADAPTERS: tuple[Adapter, ...] = (
    Adapter(
        family="llama",
        model_types=("llama", "mistral", "qwen2"),
        layer_shape=llama_shape,
        layer_count=lambda c: _int(c, "num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        load_layer=llama_layer,
    ),
    Adapter(
        family="gpt2",
        model_types=("gpt2",),
        layer_shape=gpt2_shape,
        layer_count=lambda c: _int(c, "n_layer", "num_hidden_layers"),
        embedding_name=lambda ck: _prefix(ck, GPT2_PREFIXES, "wte.weight") + "wte.weight",
        load_layer=gpt2_layer,
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


def check_layer(weights: dict[str, np.ndarray], shape: LayerShape, index: int) -> None:
    """Refuse tensors whose shapes disagree with config.json, before any circuit is built."""
    for role, expected, _ in shape.tensor_shapes():
        actual = tuple(weights[role].shape)
        if actual != expected:
            raise UsageError(f"layer {index} tensor {role} has shape {actual}, config.json implies {expected}")
