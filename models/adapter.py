"""The adapter type and what every family's reader shares: from a checkpoint's tensors to the weights HuRef's
invariants use.

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.checkpoint import Checkpoint, LazyMatrix
from noseprint.models.invariants import Routing
from noseprint.models.views import View

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


def need(config: dict, *keys: str, default=None):
    """First present key of `keys`, or a UsageError naming the missing field."""
    for key in keys:
        value = config.get(key)
        if value is not None:
            return value
    if default is not None:
        return default
    raise UsageError(f"config.json lacks {' / '.join(keys)}, needed to read a {config.get('model_type')} model")


def config_int(config: dict, *keys: str, default=None) -> int:
    value = need(config, *keys, default=default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"config.json field {keys[0]} must be a positive integer, got {value!r}")
    return value


def name_prefix(checkpoint: Checkpoint, candidates: tuple[str, ...], probe: str) -> str:
    """The tensor-name prefix this checkpoint uses (models saved with or without their LM head)."""
    for prefix in candidates:
        if checkpoint.has(prefix + probe):
            return prefix
    raise UsageError(f"checkpoint has no tensor named like {candidates[0]}{probe}")


def norm_scale(checkpoint: Checkpoint, name: str | None, hidden: int, offset: float = 0.0) -> np.ndarray:
    """A norm's scale γ as a (1, hidden) row; `name` None means the reader reads an un-normalised
    stream (γ = 1). `offset` is Gemma's: its RMSNorm scales by 1 + weight."""
    if name is None:
        return np.ones((1, hidden))
    return (checkpoint.tensor(name) + offset).reshape(1, -1)


def norm_scales(
    checkpoint: Checkpoint, attn: str | None, ffn: str | None, offset: float = 0.0
) -> dict[str, np.ndarray]:
    hidden = config_int(checkpoint.config, "hidden_size", "n_embd")
    return {
        "attn_norm": norm_scale(checkpoint, attn, hidden, offset),
        "ffn_norm": norm_scale(checkpoint, ffn, hidden, offset),
    }


def layers_from(*keys: str) -> Callable[[dict], int]:
    return lambda config: config_int(config, *keys)
