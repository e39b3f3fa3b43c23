"""Write the placeholder networks shipped in `encoder/weights/` from fixed seeds.

    python -m encoder.make_placeholder

The encoder is randomly initialised (seed 2024) and the generator He-initialised
(seed 7); the trained encoder (issue 3) and generator (issue 4) replace these
files and the pinned hashes in `encoder.release`, nothing else.
"""

from __future__ import annotations

from pathlib import Path

import torch

from encoder.generator import GeneratorConfig, random_weights, save_generator
from encoder.network import EncoderConfig, InvariantEncoder, save_encoder

WEIGHTS = Path(__file__).parent / "weights"


def main() -> None:
    torch.manual_seed(2024)
    save_encoder(InvariantEncoder(EncoderConfig()), WEIGHTS, "encoder")
    config = GeneratorConfig()
    save_generator(config, random_weights(config, seed=7), WEIGHTS / "generator.safetensors")


if __name__ == "__main__":
    main()
