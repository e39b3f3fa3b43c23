"""Lazy, read-only access to a local Hugging Face checkpoint folder.

Only the tensors a fingerprint needs are read (`safetensors.safe_open` reads headers, whole small
tensors and a few embedding rows; a matrix is a `LazyMatrix` whose blocks are zero-copy views of the
file mapped by `MappedSafetensors`, converted by the reader and their mapped pages dropped once read),
so a fingerprint's memory does not grow with the model. A sharded checkpoint
may be partial: only the shards holding what is read must be on disk
(`missing_shards` names the others, `Checkpoint.shard_of` says where a tensor
lives). Pickle checkpoints (`*.bin`, `*.pt`) execute code when loaded and are
refused unless the caller explicitly allows them.
"""

from __future__ import annotations

import json
import mmap
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from noseprint.core.errors import UsageError
from safetensors import SafetensorError, safe_open

INDEX_FILE = "model.safetensors.index.json"
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")


Span = tuple[int, int]


@dataclass(frozen=True)
class LazyMatrix:
    """A 2-D tensor of a checkpoint, or a transposed or sliced view of one, read only block by block.

    The adapters build their roles from these exactly as from arrays (`.T`, `m[a:b]`, `m[:, a:b]`), so a
    fused or transposed layout costs nothing until a block is read, and reading a block reads only its
    bytes from the memory-mapped file: the fingerprint streams any model in bounded memory."""

    read: Callable[[Span, Span], torch.Tensor]
    """(stored rows, stored columns) -> that block of the stored tensor in its stored dtype (bf16 has no numpy
    dtype), possibly a view of the mapped file: copy it before writing to it."""
    rows: Span
    cols: Span
    transposed: bool = False
    release: Callable[[Span], None] | None = None
    """Told that stored rows are done with, so the source may drop their mapped pages (`MappedSafetensors`)."""
    ndim = 2

    @property
    def shape(self) -> tuple[int, int]:
        stored = (self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])
        return (stored[1], stored[0]) if self.transposed else stored

    @property
    def T(self) -> LazyMatrix:  # noqa: N802 (numpy's name, so adapters treat arrays and views alike)
        return replace(self, transposed=not self.transposed)

    def __getitem__(self, key: slice | tuple[slice, slice]) -> LazyMatrix:
        first, second = key if isinstance(key, tuple) else (key, slice(None))
        view_rows, view_cols = self._narrow(first, 0), self._narrow(second, 1)
        stored_rows, stored_cols = (view_cols, view_rows) if self.transposed else (view_rows, view_cols)
        return replace(self, rows=stored_rows, cols=stored_cols)

    def block(self, rows: Span | None = None, cols: Span | None = None) -> np.ndarray:
        """Rows and columns (in this view's coordinates, None: all) as a new float64 array."""
        rows = (0, self.shape[0]) if rows is None else rows
        cols = (0, self.shape[1]) if cols is None else cols
        if self.transposed:
            return _float64(self._read(cols, rows)).T
        return _float64(self._read(rows, cols))

    @property
    def stored_shape(self) -> tuple[int, int]:
        """(rows, columns) of this view in the stored tensor's orientation (the transpose of `shape` if
        `transposed`)."""
        return (self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])

    def stored_block(self, rows: Span) -> torch.Tensor:
        """Stored rows [start, stop) of this view (stored orientation, all its stored columns), in the stored
        dtype: the unit a streamed reader takes, contiguous in the file when the view spans whole rows."""
        return self._read(rows, (0, self.stored_shape[1]))

    def done(self, rows: Span) -> None:
        """Stored rows [start, stop) of this view will not be read again soon (their mapped pages may go)."""
        if self.release is not None:
            self.release((self.rows[0] + rows[0], self.rows[0] + rows[1]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.block()
        return whole if dtype is None else whole.astype(dtype)

    def _read(self, rows: Span, cols: Span) -> torch.Tensor:
        """Stored-coordinate offsets added to a block of this view's stored ranges."""
        return self.read(
            (self.rows[0] + rows[0], self.rows[0] + rows[1]), (self.cols[0] + cols[0], self.cols[0] + cols[1])
        )

    def _narrow(self, key: slice, axis: int) -> Span:
        start, stop, step = key.indices(self.shape[axis])
        if step != 1:
            raise ValueError("lazy tensors take contiguous slices only")
        base = (
            (self.cols if self.transposed else self.rows)
            if axis == 0
            else (self.rows if self.transposed else self.cols)
        )
        return (base[0] + start, base[0] + max(start, stop))


def _float64(block: torch.Tensor) -> np.ndarray:
    """A new float64 array (never a view of a mapped file, even when the stored dtype is float64 already)."""
    return block.to(torch.float64, copy=True).numpy()


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
"""The stored dtypes read straight from the mapped file; others go through safetensors' own reader."""
PAGE = mmap.PAGESIZE


class MappedSafetensors:
    """One safetensors file mapped copy-on-write (nothing is ever written back), its tensors zero-copy torch
    views of the map: a block is converted straight from the page cache into the reader's own buffer, and
    `drop` unmaps pages read already (`madvise(MADV_DONTNEED)`: the page cache keeps them, the process's
    resident set does not), so reading a 70B layer does not swell the RSS by the bytes read."""

    def __init__(self, path: Path) -> None:
        try:
            with open(path, "rb") as handle:
                self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
            (length,) = struct.unpack("<Q", self.map[:8])
            header = json.loads(self.map[8 : 8 + length])
            self.start = 8 + length
            self.entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
            self.bytes = torch.frombuffer(self.map, dtype=torch.uint8)
        except (OSError, struct.error, ValueError, TypeError) as exc:
            raise UsageError(f"cannot read safetensors file {path.name}: {exc}") from None

    def view(self, name: str) -> torch.Tensor | None:
        """The whole tensor as a view of the map (None when its dtype is not one `SAFETENSORS_DTYPES` maps)."""
        entry = self.entries[name]
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            return None
        begin, end = (self.start + offset for offset in entry["data_offsets"])
        return self.bytes[begin:end].view(dtype).view(entry["shape"])

    def drop(self, name: str, rows: Span, slab: int | None = None) -> None:
        """Unmap the whole pages inside stored rows [start, stop) of a 2-D tensor (or of slab `slab` of a 3-D
        one: a fused expert tensor)."""
        entry = self.entries[name]
        begin, end = (self.start + offset for offset in entry["data_offsets"])
        if slab is not None:
            slab_bytes = (end - begin) // max(1, entry["shape"][0])
            begin, end = begin + slab * slab_bytes, begin + (slab + 1) * slab_bytes
        row_bytes = (end - begin) // max(1, entry["shape"][1 if slab is not None else 0])
        first, last = begin + rows[0] * row_bytes, begin + rows[1] * row_bytes
        first, last = -(-first // PAGE) * PAGE, last // PAGE * PAGE
        if last > first:
            self.map.madvise(mmap.MADV_DONTNEED, first, last - first)


@dataclass
class Checkpoint:
    """A checkpoint folder: its config and where each tensor lives."""

    folder: Path
    config: dict
    tensor_files: dict[str, Path]
    _pickled: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _handles: dict[Path, Any] = field(default_factory=dict, repr=False)
    _maps: dict[Path, MappedSafetensors] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Guards `_maps` (the two fingerprinted layers are read side by side, often from one file)."""

    @property
    def names(self) -> set[str]:
        return set(self.tensor_files) if self._pickled is None else set(self._pickled)

    def has(self, name: str) -> bool:
        return name in self.names

    def shape(self, name: str) -> tuple[int, ...]:
        if self._pickled is not None:
            return tuple(self._require_pickled(name).shape)
        return tuple(self._open(name).get_slice(name).get_shape())

    def tensor(self, name: str) -> np.ndarray:
        """One whole tensor as float64 (bf16/fp16/fp32 on disk)."""
        if self._pickled is not None:
            return self._require_pickled(name).to(torch.float64).numpy()
        return self._open(name).get_tensor(name).to(torch.float64).numpy()

    def matrix(self, name: str) -> LazyMatrix | np.ndarray:
        """A 2-D tensor to be read block by block (`LazyMatrix`); pickled tensors are in memory already."""
        if self._pickled is not None:
            return self.tensor(name)
        self._refuse_block_scaled(name)
        shape = self.shape(name)
        if len(shape) != 2:
            raise UsageError(f"tensor {name!r} has shape {shape}; a matrix was expected")
        return LazyMatrix(
            lambda rows, cols: self._block(name, rows, cols),
            (0, shape[0]),
            (0, shape[1]),
            release=lambda rows: self._mapped(name).drop(name, rows),
        )

    def _refuse_block_scaled(self, name: str) -> None:
        """FP8 weights stored with a per-block inverse scale (DeepSeek-V3's release: `W.weight_scale_inv`, one per
        128 x 128 block) read as their raw FP8 values would be wrong by each block's scale."""
        if self.has(f"{name}_scale_inv"):
            raise UsageError(
                f"{name} is stored in block-scaled FP8 ({name}_scale_inv beside it), which is not read: dequantise the "
                "checkpoint to bf16 first (DeepSeek's fp8_cast_bf16.py)"
            )

    def slab(self, name: str, index: int) -> LazyMatrix | np.ndarray:
        """Slab `index` of a 3-D tensor (one expert of a fused expert tensor, (experts, a, b)) as a matrix read
        block by block, like `matrix`."""
        shape = self.shape(name)
        if len(shape) != 3 or not 0 <= index < shape[0]:
            raise UsageError(f"tensor {name!r} has shape {shape}; slab {index} of a 3-D tensor was expected")
        if self._pickled is not None:
            return self.tensor(name)[index]
        return LazyMatrix(
            lambda rows, cols: self._slab_block(name, index, rows, cols),
            (0, shape[1]),
            (0, shape[2]),
            release=lambda rows: self._mapped(name).drop(name, rows, slab=index),
        )

    def _slab_block(self, name: str, index: int, rows: Span, cols: Span) -> torch.Tensor:
        whole = self._mapped(name).view(name)
        if whole is None:
            view = self._open(name).get_slice(name)
            return view[index : index + 1, rows[0] : rows[1], cols[0] : cols[1]][0].to(torch.float64)
        return whole[index, rows[0] : rows[1], cols[0] : cols[1]]

    def _block(self, name: str, rows: Span, cols: Span) -> torch.Tensor:
        """A view of the mapped file (stored dtype); other dtypes are read, and converted, by safetensors."""
        whole = self._mapped(name).view(name)
        if whole is None:
            view = self._open(name).get_slice(name)
            return view[rows[0] : rows[1], cols[0] : cols[1]].to(torch.float64)
        return whole[rows[0] : rows[1], cols[0] : cols[1]]

    def _mapped(self, name: str) -> MappedSafetensors:
        with self._lock:
            self._open(name)  # the missing-shard and unreadable-file errors
            path = self.tensor_files[name]
            if path not in self._maps:
                self._maps[path] = MappedSafetensors(path)
            return self._maps[path]

    def shard_of(self, name: str) -> Path | None:
        """The file holding `name` (None for pickled checkpoints), whether or not it is on disk."""
        return self.tensor_files.get(name)

    def rows(self, name: str, indices: list[int]) -> np.ndarray:
        """Selected rows of a 2-D tensor (the embedding), without reading the rest."""
        if self._pickled is not None:
            return self._require_pickled(name)[indices].to(torch.float64).numpy()
        view = self._open(name).get_slice(name)
        vocab = view.get_shape()[0]
        bad = [i for i in indices if not 0 <= i < vocab]
        if bad:
            raise UsageError(f"token ids {bad[:5]} are outside the embedding's {vocab} rows")
        return np.stack([view[i : i + 1].to(torch.float64).numpy()[0] for i in indices])

    def _open(self, name: str) -> Any:
        """The file's safetensors handle, opened once (it maps the file; blocks are read from the map)."""
        path = self.tensor_files.get(name)
        if path is None:
            raise UsageError(f"tensor {name!r} is missing from the checkpoint in {self.folder}")
        if path not in self._handles:
            if not path.is_file():
                raise UsageError(
                    f"tensor {name!r} lives in shard {path.name}, which is not in {self.folder}: fetch it "
                    "(`noseprint fingerprint MODEL_DIR --needed` lists every file the fingerprint reads)"
                )
            try:
                self._handles[path] = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as exc:
                raise UsageError(f"cannot read safetensors file {path.name}: {exc}") from None
        return self._handles[path]

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
    """Where each tensor lives. With an index, its shards need not all be on disk (a partial download):
    a tensor in an absent shard is refused, naming the shard, only if it is read."""
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
            sharded = {str(name): folder / str(shard) for name, shard in weight_map.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"{INDEX_FILE} in {folder} is unreadable: {exc}") from None
        outside = sorted({p.name for p in sharded.values() if p.parent != folder})
        if outside:
            raise UsageError(f"{INDEX_FILE} in {folder} names files outside the folder: {', '.join(outside)}")
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


def missing_shards(checkpoint: Checkpoint, names: list[str]) -> list[str]:
    """The files holding `names` that are not on disk, sorted (empty when everything needed is there)."""
    paths = {checkpoint.shard_of(name) for name in names}
    return sorted(p.name for p in paths if p is not None and not p.is_file())


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
