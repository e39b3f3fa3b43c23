"""The released networks and their pinned digests.

The encoder is a fixed parameter of the proven statement and the generator decides
the picture, so `verify` accepts a bundle only if it names exactly these networks.
A network's digest covers its weights and its architecture config:
sha256(sha256(weights file) ‖ sha256(config file)).
"""

from __future__ import annotations

from pathlib import Path

from noseprint.core.fileio import sha256_bytes, sha256_file

WEIGHTS = Path(__file__).parent / "weights"
ENCODER = WEIGHTS / "encoder.safetensors"
GENERATOR = WEIGHTS / "generator.safetensors"
THUMBNAIL = WEIGHTS / "thumbnail.safetensors"
"""The 16x16 generator proven by `prove --prove-image` (circuits.image_circuit)."""

RELEASED_ENCODER_DIGEST = "8b914393d7b1ef604f945f39ace17ce7a03e1d3f48d03aa256cfb4d640933f57"
RELEASED_GENERATOR_DIGEST = "1335b20630672d2ec3eab6ff601f6d9951d247100ab9a1fae6a8b3bb5e32ea53"
RELEASED_THUMBNAIL_DIGEST = "5be9d4af584b0186e88186e43a9a2f371fda32a641ec621322c5bcff4510d32e"


def network_digest(weights: Path) -> str:
    config = Path(weights).with_suffix(".json")
    return sha256_bytes((sha256_file(weights) + sha256_file(config)).encode())
