"""What the fingerprint reads from a checkpoint, and nothing else: the selected embedding rows and the
last layers' matrices, shape-checked against `config.json` and laid out as the circuit's inputs.

`open_model` reads lazily (one layer at a time, so a 7B checkpoint fingerprints in the memory of one
layer); `read_model` holds everything at once, which is fine at provable sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import UsageError
from core.layout import CircuitLayout
from models.architectures import Adapter, adapter_for, check_layer
from models.checkpoint import Checkpoint, open_checkpoint, read_config
from models.invariants import canonical_embedding
from models.tokens import Token, load_tokenizer, read_token_file, select_tokens

DEFAULT_TOKENS = 16
FINGERPRINTED_LAYERS = 2


@dataclass
class ModelWeights:
    """Every tensor the proof commits to, in memory."""

    model_type: str
    family: str
    layer_count: int
    layer_indices: list[int]
    tokens: list[Token]
    embedding: np.ndarray
    layers: list[dict[str, np.ndarray]]
    layout: CircuitLayout

    def tensors(self) -> dict[str, np.ndarray]:
        """The tensors by their layout names (`embedding`, `layer0.q`, ...)."""
        named = {"embedding": self.embedding}
        for index, weights in enumerate(self.layers):
            named.update({f"layer{index}.{role}": value for role, value in weights.items()})
        return named


@dataclass
class OpenModel:
    """A checkpoint opened for fingerprinting: everything but the layer tensors, which are read on demand."""

    checkpoint: Checkpoint
    adapter: Adapter
    model_type: str
    layer_count: int
    layer_indices: list[int]
    tokens: list[Token]
    embedding: np.ndarray
    layout: CircuitLayout

    def load_layer(self, position: int) -> dict[str, np.ndarray]:
        """The tensors of the `position`-th fingerprinted layer, shape-checked against config.json."""
        index = self.layer_indices[position]
        weights = self.adapter.load_layer(self.checkpoint, index)
        check_layer(weights, self.layout.layers[position], index)
        return weights


def open_model(model_dir: Path, token_count: int, tokens_file: Path | None, allow_pickle: bool) -> OpenModel:
    checkpoint = open_checkpoint(model_dir, allow_pickle=allow_pickle)
    adapter = adapter_for(checkpoint.config)
    shape = adapter.layer_shape(checkpoint.config)
    layer_count = adapter.layer_count(checkpoint.config)
    if layer_count < FINGERPRINTED_LAYERS:
        raise UsageError(f"the model has {layer_count} layer(s); the fingerprint needs {FINGERPRINTED_LAYERS}")
    if tokens_file is not None:
        tokens = read_token_file(tokens_file, token_count)
    else:
        tokens = select_tokens(load_tokenizer(model_dir), token_count)
    embedding = canonical_embedding(adapter.read_embedding(checkpoint, [t.id for t in tokens]), adapter.layer_norm)
    if embedding.shape[1] != shape.hidden:
        raise UsageError(f"embedding width {embedding.shape[1]} differs from hidden size {shape.hidden}")
    indices = list(range(layer_count - FINGERPRINTED_LAYERS, layer_count))
    layout = CircuitLayout(tokens=len(tokens), hidden=shape.hidden, layers=(shape,) * FINGERPRINTED_LAYERS)
    model_type = str(checkpoint.config.get("model_type"))
    return OpenModel(checkpoint, adapter, model_type, layer_count, indices, tokens, embedding, layout)


def read_layout(model_dir: Path, token_count: int = DEFAULT_TOKENS) -> CircuitLayout:
    """The circuit layout `open_model` would give, from config.json alone: no tensor, no tokenizer is read, so a
    proof of a 7B checkpoint can be costed in a second, even from a folder holding only its config.json."""
    if not Path(model_dir).is_dir():
        raise UsageError(f"model folder not found: {model_dir}")
    config = read_config(Path(model_dir))
    adapter = adapter_for(config)
    shape = adapter.layer_shape(config)
    layer_count = adapter.layer_count(config)
    if layer_count < FINGERPRINTED_LAYERS:
        raise UsageError(f"the model has {layer_count} layer(s); the fingerprint needs {FINGERPRINTED_LAYERS}")
    return CircuitLayout(tokens=token_count, hidden=shape.hidden, layers=(shape,) * FINGERPRINTED_LAYERS)


def read_model(model_dir: Path, token_count: int, tokens_file: Path | None, allow_pickle: bool) -> ModelWeights:
    """Everything the proof commits to, in memory (fine at provable sizes; `open_model` streams)."""
    opened = open_model(model_dir, token_count, tokens_file, allow_pickle)
    layers = [opened.load_layer(position) for position in range(len(opened.layer_indices))]
    return ModelWeights(
        opened.model_type,
        opened.adapter.family,
        opened.layer_count,
        opened.layer_indices,
        opened.tokens,
        opened.embedding,
        layers,
        opened.layout,
    )
