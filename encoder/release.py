"""The released networks and their pinned digests.

The encoder is a fixed parameter of the proven statement and the generator decides
the picture, so `verify` accepts a bundle only if it names exactly these networks.
A network's digest covers its weights and its architecture config:
sha256(sha256(weights file) ‖ sha256(config file)).
"""

from __future__ import annotations

from pathlib import Path

from noseprint.fileio import sha256_bytes, sha256_file

WEIGHTS = Path(__file__).parent / "weights"
ENCODER = WEIGHTS / "encoder.safetensors"
GENERATOR = WEIGHTS / "generator.safetensors"

RELEASED_ENCODER_DIGEST = "cabeb697f3b9f3bf0b9ed8bc899b9222685f08f92af81e9297cdd281872932cd"
RELEASED_GENERATOR_DIGEST = "27e54d6628eafbdbc2e72859351e5af3173a245fcc156aea5367afa155a88bf9"


def network_digest(weights: Path) -> str:
    config = Path(weights).with_suffix(".json")
    return sha256_bytes((sha256_file(weights) + sha256_file(config)).encode())
