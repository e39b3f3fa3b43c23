"""Write the released encoder to `encoder/weights/`: the seeded ±1 projection, 128 numbers wide.

    python -m training.make_encoder

The projection was chosen on the model zoo (issue 3, BENCHMARKS.md) over HuRef's
trained CNN and mean pooling; it has no weights to train, only a seed. Its width,
128, is the generator's input width (`training.train_generator`). After a change,
update the pinned digest in `encoder.release`.
"""

from __future__ import annotations

from pathlib import Path

from noseprint.encoder.network import EncoderConfig, InvariantEncoder, save_encoder

WEIGHTS = Path(__file__).parent / "weights"
RELEASED = EncoderConfig(kind="projection", channels=0, kernel=0, grid=0, z_dim=128, seed=0)


def main() -> None:
    save_encoder(InvariantEncoder(RELEASED), WEIGHTS, "encoder")


if __name__ == "__main__":
    main()
