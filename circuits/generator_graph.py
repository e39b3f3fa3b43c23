"""The generator as an ONNX graph: z (1, z_dim) -> rgb (1, 3, H, W).

The picture a verifier checks is the integer renderer's (`encoder.generator`); this
graph is its float twin (`encoder.stylegan`), exported so other tools can run the
released generator, and the starting point for proving a picture in a circuit.
"""

from __future__ import annotations

from pathlib import Path

import torch
from noseprint.encoder.stylegan import load_float


def export_generator_onnx(weights: Path, path: Path, opset: int = 17) -> Path:
    """Export the generator in `weights` (safetensors + json) to ONNX at `path`."""
    model = load_float(weights)
    z = torch.zeros(1, model.config.z_dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (z,), str(path), input_names=["z"], output_names=["rgb"], opset_version=opset, dynamo=False
    )
    return path
