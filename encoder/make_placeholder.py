"""Write the placeholder networks shipped in `encoder/weights/` from fixed seeds.

    python -m encoder.make_placeholder

The encoder is the seeded random projection chosen on the model zoo (issue 3); the
generator is He-initialised (seed 7) until the trained one (issue 4) replaces it
and the pinned hashes in `encoder.release`, nothing else.
"""

from __future__ import annotations

from pathlib import Path

from encoder.generator import GeneratorConfig, random_weights, save_generator
from encoder.network import EncoderConfig, InvariantEncoder, save_encoder

WEIGHTS = Path(__file__).parent / "weights"


def main() -> None:
    # the released encoder is the seeded ±1 projection chosen on the zoo (BENCHMARKS.md); no weights to train
    projection = EncoderConfig(kind="projection", channels=0, kernel=0, grid=0, z_dim=32, seed=0)
    save_encoder(InvariantEncoder(projection), WEIGHTS, "encoder")
    config = GeneratorConfig()
    save_generator(config, random_weights(config, seed=7), WEIGHTS / "generator.safetensors")


if __name__ == "__main__":
    main()
