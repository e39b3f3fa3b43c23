"""GGUF files (llama.cpp, Ollama) read as checkpoints: architecture and shapes from the metadata, the
tokenizer from its vocabulary, tensors dequantised by the `gguf` package itself (F32, F16, BF16, Q8_0,
Q4_0, Q4_K, Q6_K and every other type it can dequantise), block of rows by block of rows from the
memory-mapped file.

The adapters ask for Hugging Face tensor names; `gguf`'s own `TensorNameMap` translates them to GGUF's
(`model.layers.30.self_attn.q_proj.weight` -> `blk.30.attn_q.weight`), so the LLaMA adapter reads a GGUF
file unchanged.

llama.cpp's converter permutes the rows of Wq and Wk within each head (`LlamaModel.permute`: the two
rotary halves interleaved). It is the same permutation of the head_dim rows for every query and every
K/V head, so the canonical QK = Σ_heads (E·γa·Wq_hᵀ)(E·γa·Wk_hᵀ)ᵀ sums the same products in another
order and is unchanged; V, O and the FFN are not permuted. So the permutation need not be undone
(tests/test_gguf.py checks a converted file's fingerprint against its safetensors original).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from noseprint.core.errors import UsageError
from noseprint.models.checkpoint import Checkpoint, LazyMatrix, Span

GGUF_SUFFIX = ".gguf"
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "smollm3": "smollm3", "qwen3moe": "qwen3_moe"}
"""GGUF `general.architecture` -> the `model_type` whose adapter reads it (Mistral converts as llama). Qwen3's q/k
norms are `attn_q_norm`/`attn_k_norm`; Qwen3-MoE's experts are merged per projection (`ffn_gate_exps`:
(experts, ffn, hidden)), read one expert's slab at a time, its router `ffn_gate_inp`. Not yet: Gemma 3 (llama.cpp
stores its norms as 1 + weight), OLMo 2, gpt-oss, DeepSeek-V3 (`deepseek2`, its kv_b split in two), Mixtral (as
`llama` with experts)."""
SENTENCEPIECE_SPACE = "\u2581"
"""How SentencePiece vocabularies (tokenizer.ggml.model "llama") spell a word's leading space."""
TENSOR_SUFFIXES = (".weight", ".bias")


@dataclass
class GgufCheckpoint(Checkpoint):
    """A GGUF file in the `Checkpoint` interface, tensor names translated to Hugging Face's."""

    reader: Any = field(default=None, repr=False)
    gguf_names: Callable[[str], str | None] = field(default=lambda name: None, repr=False)
    tensors: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> set[str]:
        return set(self.tensors)

    def has(self, name: str) -> bool:
        return self.gguf_names(name) in self.tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in reversed(self._tensor(name).shape))  # GGUF lists the fastest axis first

    def tensor(self, name: str) -> np.ndarray:
        return self._dequantised(name, None)

    def matrix(self, name: str) -> LazyMatrix | np.ndarray:
        shape = self.shape(name)
        if len(shape) != 2:
            raise UsageError(f"tensor {name!r} has shape {shape}; a matrix was expected")
        return LazyMatrix(
            lambda rows, cols: torch.from_numpy(self._dequantised(name, rows, dtype=np.float32)[:, cols[0] : cols[1]]),
            (0, shape[0]),
            (0, shape[1]),
        )

    def slab(self, name: str, index: int) -> LazyMatrix | np.ndarray:
        """Slab `index` of a 3-D tensor (one expert of merged expert tensors), dequantised block by block."""
        shape = self.shape(name)
        if len(shape) != 3 or not 0 <= index < shape[0]:
            raise UsageError(f"tensor {name!r} has shape {shape}; slab {index} of a 3-D tensor was expected")
        return LazyMatrix(
            lambda rows, cols: torch.from_numpy(
                self._dequantised(name, rows, dtype=np.float32, slab=index)[:, cols[0] : cols[1]]
            ),
            (0, shape[1]),
            (0, shape[2]),
        )

    def rows(self, name: str, indices: list[int]) -> np.ndarray:
        vocab = self.shape(name)[0]
        bad = [i for i in indices if not 0 <= i < vocab]
        if bad:
            raise UsageError(f"token ids {bad[:5]} are outside the embedding's {vocab} rows")
        return np.concatenate([self._dequantised(name, (i, i + 1)) for i in indices])

    def shard_of(self, name: str) -> Path | None:
        return self.folder

    def _tensor(self, name: str) -> Any:
        tensor = self.tensors.get(self.gguf_names(name) or "")
        if tensor is None:
            raise UsageError(f"tensor {name!r} is missing from the GGUF file {self.folder}")
        return tensor

    def _dequantised(
        self, name: str, rows: Span | None, cols: Span | None = None, dtype: type = np.float64, slab: int | None = None
    ) -> np.ndarray:
        """Rows and columns [start, stop) (None: all) as float64 (or `dtype`: the streamed reader takes gguf's
        own float32), dequantised by `gguf.quants` from the mapped bytes. Columns are read as the whole
        quantisation blocks that hold them (a column block costs its own bytes, not the whole matrix). `slab`:
        the rows are those of one slab of a 3-D tensor."""
        from gguf import GGML_QUANT_SIZES
        from gguf.quants import dequantize

        tensor = self._tensor(name)
        data = tensor.data if slab is None else tensor.data[slab]
        data = data if rows is None else data[rows[0] : rows[1]]
        offset = 0
        if cols is not None and data.ndim == 2:
            block, size = GGML_QUANT_SIZES[tensor.tensor_type]
            per_item = size if data.dtype == np.uint8 else 1  # quantised: bytes; F16/F32: elements
            first, last = cols[0] // block, -(-cols[1] // block)
            data, offset = data[:, first * per_item : last * per_item], first * block
        try:
            values = dequantize(np.ascontiguousarray(data), tensor.tensor_type)
        except NotImplementedError:
            raise UsageError(
                f"GGUF tensor {tensor.name} is {tensor.tensor_type.name}, which gguf cannot dequantise"
            ) from None
        values = values.astype(dtype, copy=False)
        if not values.flags.writeable:  # F32 (F64) data can come back as the read-only map itself
            values = values.copy()
        if cols is not None and values.ndim == 2:
            values = values[:, cols[0] - offset : cols[1] - offset]
        return values


def is_gguf(path: Path) -> bool:
    return Path(path).suffix.lower() == GGUF_SUFFIX


def open_gguf(path: Path) -> GgufCheckpoint:
    """A GGUF file's metadata and tensor table (nothing is dequantised yet)."""
    from gguf import MODEL_ARCH_NAMES, GGUFReader, get_tensor_name_map

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"GGUF file not found: {path}")
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError) as exc:  # gguf raises ValueError for bad magic/versions
        raise UsageError(f"{path.name} is not a readable GGUF file: {exc}") from None
    arch = str(_field(reader, "general.architecture"))
    if arch not in ARCHITECTURES:
        raise UsageError(f"GGUF architecture {arch!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}")
    config = gguf_config(reader, arch)
    model_arch = next(key for key, value in MODEL_ARCH_NAMES.items() if value == arch)
    name_map = get_tensor_name_map(model_arch, config["num_hidden_layers"])
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    return GgufCheckpoint(
        path, config, {}, reader=reader, tensors=tensors,
        gguf_names=lambda name: name_map.get_name(name, try_suffixes=TENSOR_SUFFIXES),
    )  # fmt: skip


def gguf_config(reader: Any, arch: str) -> dict:
    """The config.json fields the adapters read, from the GGUF metadata (`{arch}.block_count`, ...)."""
    heads = int(_field(reader, f"{arch}.attention.head_count"))
    hidden = int(_field(reader, f"{arch}.embedding_length"))
    config = {
        "model_type": ARCHITECTURES[arch],
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, f"{arch}.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, f"{arch}.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
    }
    key_length = _field(reader, f"{arch}.attention.key_length", None)
    if key_length is not None:
        config["head_dim"] = int(key_length)
    experts = _field(reader, f"{arch}.expert_count", None)
    if experts:
        config["num_experts"] = int(experts)
        config["num_experts_per_tok"] = int(_field(reader, f"{arch}.expert_used_count"))
        config["moe_intermediate_size"] = int(_field(reader, f"{arch}.expert_feed_forward_length"))
    return config


def gguf_tokenizer(path: Path) -> Callable[[str], list[int]]:
    """Word -> ids by the GGUF vocabulary: a word is one token when the vocabulary holds it as a piece
    (SentencePiece vocabularies spell the leading space as ▁, as the model's tokenizer encodes a word)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    pieces = _field(reader, "tokenizer.ggml.tokens", None)
    if pieces is None:
        raise UsageError(f"{Path(path).name} has no vocabulary (tokenizer.ggml.tokens); pass --tokens FILE")
    space = SENTENCEPIECE_SPACE if _field(reader, "tokenizer.ggml.model", "") == "llama" else ""
    ids = {str(piece): index for index, piece in enumerate(pieces)}
    return lambda word: [ids[space + word]] if space + word in ids else []


_ABSENT = object()


def _field(reader: Any, key: str, default: Any = _ABSENT) -> Any:
    entry = reader.fields.get(key)
    if entry is None:
        if default is _ABSENT:
            raise UsageError(f"GGUF metadata lacks {key}")
        return default
    return entry.contents()
