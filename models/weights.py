"""What the fingerprint reads from a checkpoint, and nothing else: the selected embedding rows and the
last layers' matrices, shape-checked against `config.json` and laid out as the circuit's inputs.

`open_model` reads only headers, the tokenizer and the embedding rows; its layers come whole (`load_layer`)
or as views read block by block (`lazy_layer`, what `fingerprint` streams, in memory that does not grow
with the model); `read_model` holds everything at once, which is fine at provable sizes. The source may
be a checkpoint folder (a partial download will do: only the shards holding what is read), a GGUF file, or
a Hugging Face id in the local cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.core.layout import CircuitLayout
from noseprint.core.tokens import NotTheRule, TokenList, select
from noseprint.models.architectures import Adapter, Matrix, adapter_for, check_layer, needed_tensors
from noseprint.models.checkpoint import Checkpoint, missing_shards, open_checkpoint, read_config
from noseprint.models.gguf import gguf_tokenizer, is_gguf, open_gguf
from noseprint.models.hub import resolve_model
from noseprint.models.invariants import canonical_embedding
from noseprint.models.tokens import load_tokenizer, read_token_file

DEFAULT_TOKENS = 16
FINGERPRINTED_LAYERS = 2


@dataclass
class ModelWeights:
    """Every tensor the proof commits to, in memory."""

    model_type: str
    family: str
    layer_count: int
    layer_indices: list[int]
    tokens: TokenList
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
    tokens: TokenList
    embedding: np.ndarray
    layout: CircuitLayout

    def load_layer(self, position: int) -> dict[str, np.ndarray]:
        """The tensors of the `position`-th fingerprinted layer, shape-checked against config.json."""
        index = self.layer_indices[position]
        weights = self.adapter.load_layer(self.checkpoint, index)
        check_layer(weights, self.layout.layers[position], index)
        return weights

    def lazy_layer(self, position: int) -> dict[str, Matrix]:
        """The same roles, shape-checked, with matrices as views read block by block (`models.streamed`)."""
        index = self.layer_indices[position]
        weights = self.adapter.lazy_layer(self.checkpoint, index)
        check_layer(weights, self.layout.layers[position], index)
        return weights


def fingerprinted_layers(layer_count: int) -> list[int]:
    if layer_count < FINGERPRINTED_LAYERS:
        raise UsageError(f"the model has {layer_count} layer(s); the fingerprint needs {FINGERPRINTED_LAYERS}")
    return list(range(layer_count - FINGERPRINTED_LAYERS, layer_count))


def open_source(source: Path | str, allow_pickle: bool = False) -> Checkpoint:
    """A checkpoint folder, a GGUF file or a Hugging Face id in the local cache, opened (headers only)."""
    path = resolve_model(source)
    return open_gguf(path) if is_gguf(path) else open_checkpoint(path, allow_pickle=allow_pickle)


def needed_files(model_dir: Path) -> tuple[list[str], list[str]]:
    """(files the fingerprint reads, those of them not on disk), from config.json and the shard index alone:
    what to fetch of a partial download before `fingerprint` or `prove`."""
    checkpoint = open_source(model_dir)
    adapter = adapter_for(checkpoint.config)
    names = needed_tensors(checkpoint, adapter, fingerprinted_layers(adapter.layer_count(checkpoint.config)))
    files = sorted({path.name for name in names if (path := checkpoint.shard_of(name)) is not None})
    return files, missing_shards(checkpoint, names)


def choose_tokens(checkpoint: Checkpoint, token_count: int, tokens_file: Path | None) -> TokenList:
    """The token rule's selection from the model's own tokenizer (`core.tokens`). A token file is for a model
    that has no tokenizer; where it has one, the file must be exactly the rule's selection, in its order: the
    same weights give one fingerprint, so nobody picks or reorders the tokens."""
    folder = checkpoint.folder
    try:
        encode = gguf_tokenizer(folder) if is_gguf(folder) else load_tokenizer(folder)
    except UsageError:
        if tokens_file is None:
            raise
        return _owners_tokens(tokens_file, token_count)
    chosen = select(encode, token_count)
    if tokens_file is not None and read_token_file(tokens_file, token_count).ids != chosen.ids:
        raise NotTheRule(
            f"{tokens_file} lists other tokens (or another order) than the token rule selects from this model's "
            f"tokenizer ({chosen.ids}); fingerprints are taken at the rule's tokens only: drop --tokens"
        )
    return chosen


def _owners_tokens(tokens_file: Path, token_count: int) -> TokenList:
    """A model without a tokenizer: the owner's list (not comparable), which may not reorder the rule's words."""
    owners = read_token_file(tokens_file, token_count)
    problem = owners.order_error()
    if problem is not None:
        raise NotTheRule(f"{tokens_file}: {problem}")
    return owners


def open_model(model_dir: Path, token_count: int, tokens_file: Path | None, allow_pickle: bool) -> OpenModel:
    checkpoint = open_source(model_dir, allow_pickle=allow_pickle)
    adapter = adapter_for(checkpoint.config)
    shape = adapter.layer_shape(checkpoint.config)
    layer_count = adapter.layer_count(checkpoint.config)
    indices = fingerprinted_layers(layer_count)
    absent = missing_shards(checkpoint, needed_tensors(checkpoint, adapter, indices))
    if absent:
        raise UsageError(
            f"the fingerprint reads shard(s) not in {model_dir}: {', '.join(absent)} "
            "(other shards of the index may stay absent; `noseprint fingerprint MODEL_DIR --needed` lists them all)"
        )
    tokens = choose_tokens(checkpoint, token_count, tokens_file)
    embedding = canonical_embedding(adapter.read_embedding(checkpoint, [t.id for t in tokens]), adapter.layer_norm)
    if embedding.shape[1] != shape.hidden:
        raise UsageError(f"embedding width {embedding.shape[1]} differs from hidden size {shape.hidden}")
    shapes = tuple(adapter.shape_of(checkpoint.config, index) for index in indices)
    layout = CircuitLayout(tokens=len(tokens), hidden=shape.hidden, layers=shapes)
    model_type = str(checkpoint.config.get("model_type"))
    return OpenModel(checkpoint, adapter, model_type, layer_count, indices, tokens, embedding, layout)


def read_layout(model_dir: Path, token_count: int = DEFAULT_TOKENS) -> CircuitLayout:
    """The circuit layout `open_model` would give, from config.json alone: no tensor, no tokenizer is read, so a
    proof of a 7B checkpoint can be costed in a second, even from a folder holding only its config.json."""
    if not Path(model_dir).is_dir():
        raise UsageError(f"model folder not found: {model_dir}")
    config = read_config(Path(model_dir))
    adapter = adapter_for(config)
    shapes = tuple(adapter.shape_of(config, index) for index in fingerprinted_layers(adapter.layer_count(config)))
    return CircuitLayout(tokens=token_count, hidden=shapes[0].hidden, layers=shapes)


def proof_gap(model_dir: Path | str, allow_pickle: bool = False) -> str | None:
    """Why the chunked proof cannot prove this model's fingerprint (None: it can), from its config alone."""
    path = Path(model_dir)
    config = read_config(path) if path.is_dir() else open_source(model_dir, allow_pickle).config
    adapter = adapter_for(config)
    gap = adapter.proof_gap(config, fingerprinted_layers(adapter.layer_count(config)))
    return None if gap is None else f"{config.get('model_type')}: {gap}"


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
