"""The generator in floating point: the torch twin of `encoder.generator`, for training and ONNX export.

Same architecture, same parameter names, same operations in the same order as the
integer renderer (mapping MLP, 4x4 constant, per resolution a nearest 2x
upsampling and two modulated, demodulated 3x3 convolutions with leaky ReLU 13/64,
a modulated 1x1 toRGB into a blurred-upsampled skip image). Training happens here;
`quantised_weights` turns the result into the integers that `encoder.generator`
renders bit-exactly on every machine.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from noseprint.encoder.generator import GeneratorConfig
from torch import nn

SLOPE = 13 / 64
"""The integer renderer's leaky-ReLU slope (a shift by 6 bits)."""


class StyledConv(nn.Module):
    """Modulated convolution: an affine map of w scales the input channels, then (optionally) demodulation."""

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, kernel: int, demodulate: bool, gain: float):
        super().__init__()
        self.affine = nn.Linear(w_dim, in_channels)
        nn.init.normal_(self.affine.weight, std=0.5 / w_dim**0.5)
        nn.init.ones_(self.affine.bias)
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel, kernel) * gain / (in_channels * kernel * kernel) ** 0.5
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Scale the activations instead of the weights (StyleGAN2's non-fused path): one shared convolution
        for the whole batch, several times faster on a CPU than a grouped one, and the same function."""
        style = self.affine(w)
        out = F.conv2d(x * style[:, :, None, None], self.weight, padding=self.weight.shape[-1] // 2)
        if self.demodulate:
            energy = style.square() @ self.weight.square().sum(dim=(2, 3)).T
            out = out * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        return out + self.bias[None, :, None, None]


class Block(nn.Module):
    def __init__(self, config: GeneratorConfig, level: int):
        super().__init__()
        channels, w_dim = config.channels, config.w_dim
        if level > 0:
            self.conv0 = StyledConv(w_dim, channels[level - 1], channels[level], 3, True, 1.0)
        self.conv1 = StyledConv(w_dim, channels[level], channels[level], 3, True, 1.0)
        self.rgb = StyledConv(w_dim, channels[level], 3, 1, False, 0.3)


def blur_upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x then [1, 2, 1]/4 on each axis with replicated edges, like `generator.smooth_upsample`.

    Written with slices rather than a padded convolution so the ONNX export has static shapes."""
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    for axis in (2, 3):
        padded = torch.cat([x.narrow(axis, 0, 1), x, x.narrow(axis, x.shape[axis] - 1, 1)], dim=axis)
        size = x.shape[axis]
        x = (padded.narrow(axis, 0, size) + 2 * padded.narrow(axis, 1, size) + padded.narrow(axis, 2, size)) / 4
    return x


class StyleGenerator(nn.Module):
    """z (B, z_dim) -> rgb (B, 3, H, W), about [-1, 1]; `pixels` maps it to 0..255 as the renderer does."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        widths = [config.z_dim] + [config.w_dim] * config.mapping_layers
        self.mapping = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        for layer in self.mapping:
            assert isinstance(layer, nn.Linear)
            nn.init.normal_(layer.weight, std=1.4 / layer.in_features**0.5)
            nn.init.zeros_(layer.bias)
        self.const = nn.Parameter(torch.randn(config.channels[0], 4, 4))
        for level in range(len(config.channels)):
            setattr(self, f"block{level}", Block(config, level))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = z
        for layer in self.mapping:
            w = F.leaky_relu(layer(w), SLOPE)
        x = self.const[None].expand(z.shape[0], -1, -1, -1)
        block = cast(Block, self.block0)
        x = F.leaky_relu(block.conv1(x, w), SLOPE)
        rgb = block.rgb(x, w)
        for level in range(1, len(self.config.channels)):
            block = getattr(self, f"block{level}")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = F.leaky_relu(block.conv0(x, w), SLOPE)
            x = F.leaky_relu(block.conv1(x, w), SLOPE)
            rgb = blur_upsample(rgb) + block.rgb(x, w)
        return rgb


def pixels(rgb: torch.Tensor) -> torch.Tensor:
    """The renderer's output mapping, (rgb + 1)·127.5 clipped, as (B, H, W, 3) uint8."""
    return ((rgb + 1) * 127.5).floor().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def quantised_weights(model: StyleGenerator) -> dict[str, np.ndarray]:
    """Float weights -> the integer renderer's fixed point (config.frac_bits fractional bits).

    A demodulated convolution's output does not depend on its weight's scale, so
    those weights are first scaled to unit RMS: they then use the whole fixed-point
    range instead of a few integer levels.
    """
    one = 1 << model.config.frac_bits
    weights = {}
    for name, value in model.state_dict().items():
        value = value.detach().double()
        is_demodulated_weight = name.endswith(".weight") and ".affine." not in name and ".rgb." not in name
        if is_demodulated_weight and not name.startswith("mapping."):
            value = value / value.square().mean().sqrt()
        weights[name] = torch.round(value * one).to(torch.int64).numpy()
    return weights


def from_integer(config: GeneratorConfig, weights: dict[str, np.ndarray]) -> StyleGenerator:
    """The float twin of shipped integer weights (dequantised): what ONNX export and fast batch rendering use."""
    model = StyleGenerator(config)
    one = float(1 << config.frac_bits)
    state = {
        name: torch.from_numpy(np.asarray(value, dtype=np.float64) / one).float() for name, value in weights.items()
    }
    model.load_state_dict(state)
    return model.eval()


def load_float(path) -> StyleGenerator:
    """The float twin of a generator file (`generator.safetensors` + its `.json`)."""
    from noseprint.encoder.generator import load_generator

    integer = load_generator(path)
    return from_integer(integer.config, integer.w)
