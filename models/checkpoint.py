"""Lazy, read-only access to a local Hugging Face checkpoint folder.

Only the tensors a fingerprint needs are read (`safetensors.safe_open` maps the
file and reads one tensor, or a few embedding rows, at a time), so a 7B model
fingerprints in the memory of its last two layers. Pickle checkpoints
(`*.bin`, `*.pt`) execute code when loaded and are refused unless the caller
explicitly allows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from core.errors import UsageError

INDEX_FILE = "model.safetensors.index.json"
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")


@dataclass
class Checkpoint:
    """A checkpoint folder: its config and where each tensor lives."""

    folder: Path
    config: dict
    tensor_files: dict[str, Path]
    _pickled: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def names(self) -> set[str]:
        return set(self.tensor_files) if self._pickled is None else set(self._pickled)

    def has(self, name: str) -> bool:
        return name in self.names

    def shape(self, name: str) -> tuple[int, ...]:
        if self._pickled is not None:
            return tuple(self._require_pickled(name).shape)
        with self._open(name) as handle:
            return tuple(handle.get_slice(name).get_shape())

    def tensor(self, name: str) -> np.ndarray:
        """One whole tensor as float64 (bf16/fp16/fp32 on disk)."""
        if self._pickled is not None:
            return self._require_pickled(name).to(torch.float64).numpy()
        with self._open(name) as handle:
            return handle.get_tensor(name).to(torch.float64).numpy()

    def rows(self, name: str, indices: list[int]) -> np.ndarray:
        """Selected rows of a 2-D tensor (the embedding), without reading the rest."""
        if self._pickled is not None:
            return self._require_pickled(name)[indices].to(torch.float64).numpy()
        with self._open(name) as handle:
            view = handle.get_slice(name)
            vocab = view.get_shape()[0]
            bad = [i for i in indices if not 0 <= i < vocab]
            if bad:
                raise UsageError(f"token ids {bad[:5]} are outside the embedding's {vocab} rows")
            return np.stack([view[i : i + 1].to(torch.float64).numpy()[0] for i in indices])

    def _open(self, name: str):
        path = self.tensor_files.get(name)
        if path is None:
            raise UsageError(f"tensor {name!r} is missing from the checkpoint in {self.folder}")
        try:
            return safe_open(str(path), framework="pt")
        except (SafetensorError, OSError) as exc:
            raise UsageError(f"cannot read safetensors file {path.name}: {exc}") from None

    def _require_pickled(self, name: str) -> torch.Tensor:
        assert self._pickled is not None
        if name not in self._pickled:
            raise UsageError(f"tensor {name!r} is missing from the checkpoint in {self.folder}")
        return self._pickled[name]


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UsageError(f"{folder} has no config.json: not a Hugging Face checkpoint folder")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"config.json in {folder} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"config.json in {folder} is not a JSON object")
    return config


def _index_safetensors(folder: Path) -> dict[str, Path]:
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{INDEX_FILE} in {folder} is unreadable: {exc}") from None
        sharded = {name: folder / shard for name, shard in weight_map.items()}
        missing = sorted({p.name for p in sharded.values() if not p.is_file()})
        if missing:
            raise UsageError(f"shards named in {INDEX_FILE} are missing: {', '.join(missing)}")
        return sharded
    files: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    files[name] = path
        except (SafetensorError, OSError) as exc:
            raise UsageError(f"cannot read safetensors file {path.name}: {exc}") from None
    return files


def open_checkpoint(folder: Path, allow_pickle: bool = False) -> Checkpoint:
    """Open a checkpoint folder, reading only headers."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"model folder not found: {folder}")
    config = read_config(folder)
    files = _index_safetensors(folder)
    if files:
        return Checkpoint(folder, config, files)
    pickles = [p for pattern in PICKLE_PATTERNS for p in sorted(folder.glob(pattern))]
    if not pickles:
        raise UsageError(f"{folder} holds no *.safetensors weights")
    if not allow_pickle:
        raise UsageError(
            f"{folder} holds only pickle weights ({pickles[0].name}), which run code when loaded; "
            "convert them to safetensors, or pass --allow-pickle if you trust the file"
        )
    tensors: dict[str, torch.Tensor] = {}
    for path in pickles:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt pickles
            raise UsageError(f"cannot load {path.name}: {exc}") from None
        tensors.update({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})
    return Checkpoint(folder, config, {}, tensors)
