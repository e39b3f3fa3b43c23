"""The invariant encoder: six standardised n x n invariant terms -> a vector.

Kept deliberately small because it runs inside the proof: EZKL pays about one
circuit row per convolution MAC and per fixed parameter. The architecture is
described by a JSON config shipped beside the weights, so a retrained encoder
(another size, other weights) drops in without touching the proof code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

TERMS = 6
"""Three HuRef terms (QK, VO, FFN) for each of the last two layers."""


@dataclass(frozen=True)
class EncoderConfig:
    channels: int = 16
    kernel: int = 4
    grid: int = 2
    z_dim: int = 32


class InvariantEncoder(nn.Module):
    """Patch convolution, ReLU, average pooling to a fixed grid, linear map to z.

    A stand-in for HuRef's 48x48 CNN at a size a proof can afford; the trained
    design (issue 3) replaces it through the same config + safetensors files.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.patch = nn.Conv2d(TERMS, config.channels, config.kernel, stride=config.kernel)
        self.pool = nn.AdaptiveAvgPool2d(config.grid)
        self.head = nn.Linear(config.channels * config.grid * config.grid, config.z_dim)

    def forward(self, terms: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.patch(terms))
        return self.head(self.pool(hidden).flatten(1))


def save_encoder(encoder: InvariantEncoder, folder: Path, name: str = "encoder") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, folder / f"{name}.safetensors")
    (folder / f"{name}.json").write_text(json.dumps(asdict(encoder.config), indent=2, sort_keys=True) + "\n")


def load_encoder(weights: Path) -> InvariantEncoder:
    """Load weights from `X.safetensors` and the architecture from `X.json` beside it."""
    config = EncoderConfig(**json.loads(weights.with_suffix(".json").read_text()))
    encoder = InvariantEncoder(config)
    encoder.load_state_dict(load_file(weights))
    return encoder.eval()
