"""Which adapter reads which model_type (`ADAPTERS`), and what reading a model's layers needs.

The adapter type and its conventions are `models.adapter`; the families' readers `models.families_classic` and
`models.families_2026`.

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
from collections.abc import Mapping

from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.adapter import Adapter, Matrix, config_int, layers_from, name_prefix
from noseprint.models.checkpoint import Checkpoint
from noseprint.models.families_2026 import (
    GEMMA3_PREFIXES,
    GEMMA3_TYPES,
    layer_routing,
    moe_layer,
    moe_shape,
    qk_norm_layer,
    qk_norm_shape,
    text_config,
)
from noseprint.models.families_classic import (
    BERT_PREFIXES,
    FALCON_PREFIXES,
    GPT2_PREFIXES,
    LLAMA_PREFIXES,
    NEOX_PREFIXES,
    OPT_PREFIXES,
    bert_layer,
    bert_shape,
    falcon_layer,
    falcon_shape,
    gpt2_layer,
    gpt2_shape,
    gptj_layer,
    gptj_shape,
    llama_embedding,
    llama_layer,
    llama_shape,
    neox_layer,
    neox_shape,
    opt_embedding,
    opt_layer,
    opt_shape,
    phi3_layer,
)


def _moe_adapter(family: str) -> Adapter:
    return Adapter(
        family=family,
        model_types=(family,),
        layer_shape=lambda config: moe_shape(config, config_int(config, "num_hidden_layers") - 1),
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=llama_embedding,
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
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=llama_layer,
    ),
    Adapter(
        family="phi3",
        model_types=("phi3",),
        layer_shape=llama_shape,
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, LLAMA_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=phi3_layer,
    ),
    Adapter(
        family="qwen3",
        model_types=("qwen3",),
        layer_shape=qk_norm_shape,
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=llama_embedding,
        layer_reader=qk_norm_layer,
    ),
    Adapter(
        family="gemma3",
        model_types=GEMMA3_TYPES,
        layer_shape=qk_norm_shape,
        layer_count=lambda config: config_int(text_config(config), "num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, GEMMA3_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=qk_norm_layer,
    ),
    Adapter(
        family="olmo2",
        model_types=("olmo2",),
        layer_shape=qk_norm_shape,
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=llama_embedding,
        layer_reader=qk_norm_layer,
    ),
    *(_moe_adapter(family) for family in ("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3")),
    Adapter(
        family="gpt2",
        model_types=("gpt2",),
        layer_shape=gpt2_shape,
        layer_count=layers_from("n_layer", "num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, GPT2_PREFIXES, "wte.weight") + "wte.weight",
        layer_reader=gpt2_layer,
        layer_norm=True,
    ),
    Adapter(
        family="gpt_neox",
        model_types=("gpt_neox",),
        layer_shape=neox_shape,
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, NEOX_PREFIXES, "embed_in.weight") + "embed_in.weight",
        layer_reader=neox_layer,
        layer_norm=True,
    ),
    Adapter(
        family="gptj",
        model_types=("gptj",),
        layer_shape=gptj_shape,
        layer_count=layers_from("n_layer", "num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, GPT2_PREFIXES, "wte.weight") + "wte.weight",
        layer_reader=gptj_layer,
        layer_norm=True,
    ),
    Adapter(
        family="opt",
        model_types=("opt",),
        layer_shape=opt_shape,
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=lambda ck: name_prefix(ck, OPT_PREFIXES, "embed_tokens.weight") + "embed_tokens.weight",
        layer_reader=opt_layer,
        embedding_rows=opt_embedding,
        layer_norm=True,
        reads_previous_norm=lambda config: not config.get("do_layer_norm_before", True),
    ),
    Adapter(
        family="falcon",
        model_types=("falcon",),
        layer_shape=falcon_shape,
        layer_count=layers_from("num_hidden_layers", "n_layer"),
        embedding_name=lambda ck: name_prefix(ck, FALCON_PREFIXES, "word_embeddings.weight") + "word_embeddings.weight",
        layer_reader=falcon_layer,
        layer_norm=True,
    ),
    Adapter(
        family="bert",
        model_types=("bert",),
        layer_shape=bert_shape,
        layer_count=layers_from("num_hidden_layers"),
        embedding_name=lambda ck: (
            name_prefix(ck, BERT_PREFIXES, "embeddings.word_embeddings.weight") + "embeddings.word_embeddings.weight"
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
