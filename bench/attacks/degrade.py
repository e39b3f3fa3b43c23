"""Transforms that change a model's function a little, as a re-user of a stolen checkpoint would.

Unlike the function-preserving re-parametrisations (`bench/attacks/transforms.py`), each of these
costs something: quantisation and pruning add rounding noise, a merge mixes two fine-tunes, and
dropping or repeating the last layer changes which weights the fingerprint reads at all (it always
reads the last two layers). Each transform reads a model folder and writes a new one (config,
`model.safetensors`, tokenizer and any other side files copied), which `lineage.compare.compare`
reads like any checkpoint. They work on the tensor names alone, so LLaMA-type decoders and BERT
encoders (the real all-MiniLM-L6-v2) go through the same code.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from noseprint.lineage.compare import compare
from noseprint.lineage.verdict import verdict
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
"""Files a transform never copies from the source folder: it writes its own weights."""

INT8_LEVELS = 127
"""Symmetric int8: codes in [-127, 127], one scale per output channel (row)."""
INT4_MIN_CODE, INT4_MAX_CODE = -8, 7
"""Signed 4-bit codes, used in full as GGUF's Q4_0 does: the scale maps the group's largest-magnitude
value to -8, so that value is exact and the rest round to the 16 levels."""
DEFAULT_INT4_GROUP = 32
"""GGUF Q4_0's block size (GPTQ users commonly pick 32 or 128)."""
LAYER_NAME = re.compile(r"(?:^|\.)(?:layers|layer|h)\.(\d+)\.")
"""The block index inside a tensor name: `model.layers.3.`, `encoder.layer.5.`, `transformer.h.2.`."""
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
CAUSAL_SUFFIX = "ForCausalLM"
"""config.json's `architectures` entry of a language model with its head (`LlamaForCausalLM`)."""


# --------------------------------------------------------------------------------------------- folder I/O


def read_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a single-file safetensors checkpoint (the zoo's and MiniLM's layout)."""
    return load_file(str(Path(folder) / MODEL_FILE))


def write_model(
    state: dict[str, torch.Tensor], source: Path, target: Path, config_updates: dict[str, Any] | None = None
) -> Path:
    """Weights into `target`, every non-weight file of `source` beside them (config, tokenizer, pooling
    config), the config updated where the transform changed the architecture (layer count)."""
    source, target = Path(source), Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=lambda _, names: [n for n in names if n.endswith(WEIGHT_SUFFIXES)])
    save_file({name: t.contiguous() for name, t in state.items()}, str(target / MODEL_FILE), metadata={"format": "pt"})
    if config_updates:
        config_path = target / CONFIG_FILE
        config = json.loads(config_path.read_text())
        config.update(config_updates)
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    return target


def is_matrix(name: str, tensor: torch.Tensor) -> bool:
    """2-D floating weights: every linear layer and every embedding table; norms and biases are 1-D."""
    return tensor.ndim == 2 and tensor.is_floating_point() and name.endswith("weight")


# --------------------------------------------------------------------------------------------- rounding


def int8_roundtrip(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 quantise-dequantise (the common LLM.int8/bitsandbytes weight format)."""
    w = weight.double()
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / INT8_LEVELS
    return (torch.round(w / scale).clamp(-INT8_LEVELS, INT8_LEVELS) * scale).to(weight.dtype)


def int4_grouped_roundtrip(weight: torch.Tensor, group: int = DEFAULT_INT4_GROUP) -> torch.Tensor:
    """GGUF Q4_0-style symmetric 4-bit round trip over groups of `group` consecutive input weights of each row.

    The scale d = m / INT4_MIN_CODE with m the group's value of largest magnitude (sign kept), codes
    round(w / d) clamped to [-8, 7]; a row whose width is not a multiple of `group` gets a short last group.
    """
    rows, cols = weight.shape
    padded_cols = -(-cols // group) * group
    w = torch.zeros(rows, padded_cols, dtype=torch.float64)
    w[:, :cols] = weight.double()
    blocks = w.view(rows, padded_cols // group, group)
    largest = blocks.gather(-1, blocks.abs().argmax(dim=-1, keepdim=True))
    scale = largest / INT4_MIN_CODE
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    codes = torch.round(blocks / safe).clamp(INT4_MIN_CODE, INT4_MAX_CODE)
    restored = (codes * scale).view(rows, padded_cols)[:, :cols]
    return restored.to(weight.dtype)


def magnitude_pruned(weight: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest `fraction` of the matrix's entries (by magnitude) set to zero, as unstructured pruning does."""
    count = int(fraction * weight.numel())
    if count == 0:
        return weight.clone()
    threshold = weight.abs().flatten().kthvalue(count).values
    return torch.where(weight.abs() <= threshold, torch.zeros_like(weight), weight)


def map_matrices(state: dict[str, torch.Tensor], transform) -> dict[str, torch.Tensor]:
    return {name: transform(t) if is_matrix(name, t) else t for name, t in state.items()}


# --------------------------------------------------------------------------------------------- transforms


def quantise_int8(source: Path, target: Path) -> Path:
    """Per-channel symmetric int8 round trip of every 2-D weight, embeddings included."""
    return write_model(map_matrices(read_state(source), int8_roundtrip), source, target)


def quantise_int4_grouped(source: Path, target: Path, group: int = DEFAULT_INT4_GROUP) -> Path:
    """Group-wise symmetric int4 round trip (GGUF Q4_0 / GPTQ-style groups) of every linear weight and embedding."""
    return write_model(map_matrices(read_state(source), lambda w: int4_grouped_roundtrip(w, group)), source, target)


def prune(source: Path, target: Path, fraction: float) -> Path:
    """Unstructured magnitude pruning of every 2-D weight (embeddings included), `fraction` per matrix."""
    return write_model(map_matrices(read_state(source), lambda w: magnitude_pruned(w, fraction)), source, target)


def floating_names(state: dict[str, torch.Tensor]) -> set[str]:
    return {name for name, tensor in state.items() if tensor.is_floating_point()}


def merge(a: Path, b: Path, target: Path, alpha: float) -> Path:
    """Linear merge (model soup / task-arithmetic average) alpha·A + (1 - alpha)·B of two same-shape models.

    Meant for two derivatives of one base (the usual merge); it runs on any same-shape pair, so it can
    also show what a merge of two unrelated bases looks like to the fingerprint."""
    left, right = read_state(a), read_state(b)
    if floating_names(left) != floating_names(right):
        raise ValueError(f"{a} and {b} have different weights; only same-architecture models merge")
    merged = dict(left)  # integer buffers (BERT's position_ids, which a re-save may drop) stay as A has them
    for name in floating_names(left):
        x, y = left[name], right[name]
        if x.shape != y.shape:
            raise ValueError(f"{name}: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
        merged[name] = (alpha * x.double() + (1 - alpha) * y.double()).to(x.dtype)
    return write_model(merged, a, target)


def layer_of(name: str) -> int | None:
    found = LAYER_NAME.search(name)
    return int(found.group(1)) if found else None


def renamed_layer(name: str, index: int) -> str:
    """`name` moved to block `index` (only the block number in the name changes)."""
    found = LAYER_NAME.search(name)
    assert found is not None
    start, end = found.span(1)
    return f"{name[:start]}{index}{name[end:]}"


def layer_count(source: Path) -> tuple[str, int]:
    """(config key, value) of the model's block count."""
    config = json.loads((Path(source) / CONFIG_FILE).read_text())
    for key in LAYER_COUNT_KEYS:
        if isinstance(config.get(key), int):
            return key, config[key]
    raise ValueError(f"{source}: config.json names no layer count ({', '.join(LAYER_COUNT_KEYS)})")


def drop_last_layers(source: Path, target: Path, k: int = 1) -> Path:
    """The last `k` blocks removed (layer-dropping compression); the fingerprint then reads two blocks that
    were never the last ones, so it is the strongest cheap change of what is fingerprinted."""
    key, count = layer_count(source)
    if not 0 < k < count:
        raise ValueError(f"cannot drop {k} of {count} layers")
    state = {n: t for n, t in read_state(source).items() if (layer_of(n) is None or layer_of(n) < count - k)}
    return write_model(state, source, target, {key: count - k})


def duplicate_last_layer(source: Path, target: Path) -> Path:
    """The last block repeated once more on top (depth up-scaling, as SOLAR-style merges stack copies);
    the fingerprint then reads the last block twice."""
    key, count = layer_count(source)
    state = read_state(source)
    copies = {renamed_layer(n, count): t.clone() for n, t in state.items() if layer_of(n) == count - 1}
    return write_model(state | copies, source, target, {key: count + 1})


# --------------------------------------------------------------------------------------------- measuring


def similarity(reference: Path, folder: Path) -> dict[str, Any]:
    """`compare`'s numbers (ICS decides between model folders) and the z-only verdict a bundle pair gets.

    `reference` may be a fingerprint folder (faster: fingerprinted once) or a model folder."""
    result = compare(Path(reference), Path(folder))
    return {
        "ics": result["ics"],
        "z_cosine": result["z_cosine"],
        "verdict": result["verdict"],
        "verdict_z": verdict(None, result["z_cosine"]),
    }


def fingerprint_once(model_folder: Path, out: Path) -> Path:
    """A fingerprint folder for `model_folder` (z and raw invariants), so every later compare reads it."""
    from noseprint.lineage.fingerprint import fingerprint_model

    fingerprint_model(Path(model_folder), Path(out), force=True)
    return Path(out)


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"noseprint-{prefix}-"))


def load_network(folder: Path):
    """The model as `transformers` runs it: with its LM head where the config names one, else the bare encoder."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    causal = any(name.endswith(CAUSAL_SUFFIX) for name in config.architectures or [])
    loader = AutoModelForCausalLM if causal else AutoModel
    return loader.from_pretrained(str(folder), local_files_only=True).eval()


@torch.no_grad()
def outputs(model, probe: torch.Tensor) -> torch.Tensor:
    """Logits of a causal LM, last hidden states of an encoder (what a sentence embedding pools)."""
    result = model(input_ids=probe)
    return result.logits if hasattr(result, "logits") else result.last_hidden_state


def max_output_change(source: Path, target: Path, probe: torch.Tensor) -> float:
    """Largest absolute change of any logit (or encoder output) on `probe`: how much the function moved."""
    before = outputs(load_network(source), probe)
    after = outputs(load_network(target), probe)
    return float((after - before).abs().max())
