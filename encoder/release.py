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
THUMBNAIL = WEIGHTS / "thumbnail.safetensors"
"""The 16x16 generator proven by `prove --prove-image` (circuits.image_circuit)."""

RELEASED_ENCODER_DIGEST = "8b914393d7b1ef604f945f39ace17ce7a03e1d3f48d03aa256cfb4d640933f57"
RELEASED_GENERATOR_DIGEST = "a3f0f5e315b412b6111fe8357469fa8b88b7f6db466b66e077c514891b1a9ee3"
RELEASED_THUMBNAIL_DIGEST = "6e5f3b58c6f13767bd02ec2576679e90aeab767c0c47ad2d6a178114ee7b6689"


def network_digest(weights: Path) -> str:
    config = Path(weights).with_suffix(".json")
    return sha256_bytes((sha256_file(weights) + sha256_file(config)).encode())
