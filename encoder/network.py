"""The invariant encoder: six standardised n x n invariant terms -> a vector z_raw.

It runs inside the proof, so its size is paid in circuit rows (BENCHMARKS.md,
"encoder candidates"). Four designs share one interface; the JSON config beside
the weights names the design (`kind`), so a retrained or different encoder drops
in without touching the proof code:

- `cnn`: HuRef's design, scaled to noseprint's token counts: strided convolutions
  with ReLU, then a mean over the spatial grid (so any n works), trained with
  HuRef's contrastive loss and Gaussian-output discriminator (`training.train`).
- `meanpool`: HuRef's simpler variant: each term averaged to a grid x grid
  summary, then one trained linear map.
- `projection`: a fixed random ±1 projection of the flattened terms, no training.
  Its matrix for n tokens is derived from a seed by SHA-256 in counter mode, so it
  is bit-identical everywhere, for every n, and ships as a seed, not as weights.
- `patch`: the seeded placeholder of the first release (one patch convolution).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

TERMS = 6
"""Three HuRef terms (QK, VO, FFN) for each of the last two layers."""


@dataclass(frozen=True)
class EncoderConfig:
    kind: str = "patch"
    channels: int = 16
    kernel: int = 4
    grid: int = 2
    z_dim: int = 32
    seed: int = 0


class PatchEncoder(nn.Module):
    """Patch convolution, ReLU, average pooling to a fixed grid, linear map to z."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.patch = nn.Conv2d(TERMS, config.channels, config.kernel, stride=config.kernel)
        self.pool = nn.AdaptiveAvgPool2d(config.grid)
        self.head = nn.Linear(config.channels * config.grid * config.grid, config.z_dim)

    def forward(self, terms: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(torch.relu(self.patch(terms))).flatten(1))


class CNNEncoder(nn.Module):
    """HuRef's encoder shape at small n: two non-overlapping 2x2 stride-2 convolutions (EZKL 23.0.5 panics on
    overlapping strided ones, padded or not: BENCHMARKS.md), a 1x1 map to z, mean over positions."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = config.channels
        self.conv1 = nn.Conv2d(TERMS, c, 2, stride=2)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 2 * c, 2, stride=2)
        self.bn2 = nn.BatchNorm2d(2 * c)
        self.head = nn.Conv2d(2 * c, config.z_dim, 1)

    def forward(self, terms: torch.Tensor) -> torch.Tensor:
        # batch norm after each ReLU, as HuRef has it: without it the outputs collapsed to one direction
        hidden = self.bn2(torch.relu(self.conv2(self.bn1(torch.relu(self.conv1(terms))))))
        return self.head(hidden).mean(dim=(-2, -1))


class MeanPoolEncoder(nn.Module):
    """Average each term over a grid x grid partition, then one linear map."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(config.grid)
        self.head = nn.Linear(TERMS * config.grid * config.grid, config.z_dim)

    def forward(self, terms: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(terms).flatten(1))


def rademacher_matrix(rows: int, cols: int, seed: int) -> np.ndarray:
    """A ±1 matrix from SHA-256(seed, rows, cols, block) bits: the same on every machine and library version."""
    needed = rows * cols
    stream = bytearray()
    block = 0
    while len(stream) * 8 < needed:
        stream += hashlib.sha256(f"noseprint-projection:{seed}:{rows}:{cols}:{block}".encode()).digest()
        block += 1
    bits = np.unpackbits(np.frombuffer(bytes(stream), dtype=np.uint8))[:needed]
    return (bits.astype(np.float64) * 2 - 1).reshape(rows, cols)


class ProjectionEncoder(nn.Module):
    """z_raw = R · vec(terms) / sqrt(dim): Johnson-Lindenstrauss, so z's cosine tracks the invariants' cosine.

    The matrix depends on n, so it is made on the first call for the shape seen
    (n is fixed in any one circuit) and kept as a constant of the graph.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self._matrices: dict[int, torch.Tensor] = {}

    def matrix(self, width: int, dtype: torch.dtype) -> torch.Tensor:
        if width not in self._matrices:
            r = rademacher_matrix(self.config.z_dim, width, self.config.seed) / np.sqrt(width)
            self._matrices[width] = torch.from_numpy(r)
        return self._matrices[width].to(dtype)

    def forward(self, terms: torch.Tensor) -> torch.Tensor:
        flat = terms.flatten(1)
        return flat @ self.matrix(int(flat.shape[1]), flat.dtype).T


DESIGNS: dict[str, type[nn.Module]] = {
    "patch": PatchEncoder,
    "cnn": CNNEncoder,
    "meanpool": MeanPoolEncoder,
    "projection": ProjectionEncoder,
}


def InvariantEncoder(config: EncoderConfig) -> nn.Module:  # noqa: N802 - reads as the constructor it replaces
    """The encoder module that `config.kind` names, with its config attached."""
    if config.kind not in DESIGNS:
        raise ValueError(f"unknown encoder design {config.kind!r}; known: {', '.join(DESIGNS)}")
    module = DESIGNS[config.kind](config)
    module.config = config  # type: ignore[assignment]  # every design keeps its config (nn.Module types attributes loosely)
    return module


def config_of(encoder: nn.Module) -> EncoderConfig:
    """The config an encoder was built from (`InvariantEncoder` attaches it)."""
    config = encoder.config
    if not isinstance(config, EncoderConfig):
        raise TypeError("not an encoder built by InvariantEncoder")
    return config


def save_encoder(encoder: nn.Module, folder: Path, name: str = "encoder") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, folder / f"{name}.safetensors")
    (folder / f"{name}.json").write_text(json.dumps(asdict(config_of(encoder)), indent=2, sort_keys=True) + "\n")


def load_encoder(weights: Path) -> nn.Module:
    """Load weights from `X.safetensors` and the architecture from `X.json` beside it."""
    config = EncoderConfig(**json.loads(Path(weights).with_suffix(".json").read_text()))
    encoder = InvariantEncoder(config)
    encoder.load_state_dict(load_file(weights))
    return encoder.eval()
