"""Every tensor a LLaMA-family forward pass reads, for the whole-model commitment and the inference proofs.

The fingerprint reads a few embedding rows and the last layers (`models.weights`); proving inference needs
the rest: the whole embedding, every layer, the final norm and the output head (the embedding again when the
checkpoint ties them). Only architectures the inference circuits implement are accepted
(`core.whole_model.SUPPORTED_TYPES`); anything else (biases, rope scaling) is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.whole_model import SUPPORTED_TYPES, InferenceShape
from noseprint.models.architectures import LLAMA_PREFIXES, adapter_for, check_layer, llama_shape
from noseprint.models.checkpoint import Checkpoint, open_checkpoint, read_config

DEFAULT_EPS = 1e-6


@dataclass
class FullModel:
    """The forward pass's tensors in float64, by role, and what the circuits need of the config."""

    shape: InferenceShape
    eps: float
    embedding: np.ndarray
    layers: list[dict[str, np.ndarray]]
    final_norm: np.ndarray
    head: np.ndarray


QK_NORM_GAP = "an RMSNorm over each head's q and k after the projection, before the rotary embedding"
MOE_GAP = (
    "a mixture-of-experts FFN: the router's logits, its top-k selection and weights, and only the chosen experts' "
    "FFNs per token (a proof of every expert would cost them all)"
)
INFERENCE_GAPS = {
    "qwen3": QK_NORM_GAP,
    "olmo2": "q/k RMSNorms over the whole projections, and norms after each sublayer instead of before it",
    "gemma3_text": f"{QK_NORM_GAP}, Gemma's (1 + weight) scales, post-norms, GELU, local sliding-window layers",
    "gemma3": "Gemma 3's text decoder (q/k norms, post-norms, local and global layers) inside a multimodal model",
    "smollm3": "layers without the rotary embedding (no_rope_layers)",
    "mixtral": MOE_GAP,
    "qwen3_moe": f"{MOE_GAP}, and {QK_NORM_GAP}",
    "gpt_oss": f"{MOE_GAP} (gpt-oss's clamped (up + 1)·glu experts), attention sinks, biases, YaRN, sliding windows",
    "deepseek_v3": (
        f"multi-head latent attention (low-rank q and kv with latent norms, a decoupled rotary key) and {MOE_GAP}"
    ),
}
"""What the inference circuits (LLaMA's) would need for the families that are fingerprinted but not served here."""


def inference_shape(config: dict) -> InferenceShape:
    """The inference circuits' shape from config.json; UsageError for what they do not implement."""
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        missing = INFERENCE_GAPS.get(str(model_type))
        why = f": the inference circuits would need {missing}" if missing else ""
        raise UsageError(
            f"inference proofs support {', '.join(SUPPORTED_TYPES)} models; this is {model_type!r}{why} "
            "(its fingerprint and `compare` work: `noseprint architectures`)"
        )
    if config.get("rope_scaling"):
        raise UsageError("inference proofs do not implement rope_scaling")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise UsageError("inference proofs do not implement attention or MLP biases")
    theta = config.get("rope_theta", 10000.0)
    if float(theta) != int(theta):
        raise UsageError(f"rope_theta {theta} is not a whole number")
    layer = llama_shape(config)
    return InferenceShape(
        vocab=int(config["vocab_size"]),
        hidden=layer.hidden,
        layers=int(config["num_hidden_layers"]),
        heads=layer.heads,
        kv_heads=layer.kv_heads,
        head_dim=layer.head_dim,
        ffn=layer.ffn,
        rope_theta=int(theta),
    )


def _prefix(checkpoint: Checkpoint) -> str:
    for prefix in LLAMA_PREFIXES:
        if checkpoint.has(f"{prefix}embed_tokens.weight"):
            return prefix
    raise UsageError("the checkpoint has no embed_tokens.weight")


def read_full_model(model_dir: Path) -> FullModel:
    """All tensors, shape-checked (seconds at provable sizes; inference proofs are for small models here)."""
    config = read_config(Path(model_dir))
    shape = inference_shape(config)
    checkpoint = open_checkpoint(Path(model_dir))
    adapter = adapter_for(config)
    prefix = _prefix(checkpoint)
    embedding = np.asarray(checkpoint.tensor(f"{prefix}embed_tokens.weight"), dtype=np.float64)
    if embedding.shape != (shape.vocab, shape.hidden):
        raise UsageError(f"the embedding is {embedding.shape}, config.json says {(shape.vocab, shape.hidden)}")
    layers = []
    for index in range(shape.layers):
        weights = adapter.load_layer(checkpoint, index)
        check_layer(weights, shape.layer_shape(), index)
        layers.append({role: np.asarray(value, dtype=np.float64) for role, value in weights.items()})
    final_norm = np.asarray(checkpoint.tensor(f"{prefix}norm.weight"), dtype=np.float64).reshape(1, -1)
    tied = not checkpoint.has("lm_head.weight")
    head = embedding if tied else np.asarray(checkpoint.tensor("lm_head.weight"), dtype=np.float64)
    if head.shape != embedding.shape:
        raise UsageError(f"the output head is {head.shape}, the embedding {embedding.shape}")
    eps = float(config.get("rms_norm_eps", DEFAULT_EPS))
    return FullModel(shape, eps, embedding, layers, final_norm, head)
