"""The image generator: z -> picture, in exact integer arithmetic.

A StyleGAN2-architecture synthesis network at a small size: a mapping MLP from z
to a style vector w, a learned 4x4 constant, then per resolution a nearest 2x
upsampling and two modulated, demodulated 3x3 convolutions with leaky ReLU, and a
modulated 1x1 "toRGB" added into a skip image. Noise inputs are off, so the output
is a function of z alone.

Every value is an int64 fixed-point number with `frac_bits` fractional bits; the
demodulation's square root is `math.isqrt`; divisions are floor divisions. No
floating point touches a pixel, so the verifier's re-rendering equals the owner's
bit for bit on every machine, as `verify` requires.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from math import isqrt
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import load_file, save_file

FRAC = 12
ONE = 1 << FRAC


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 32
    w_dim: int = 64
    mapping_layers: int = 2
    channels: tuple[int, ...] = (64, 64, 48, 32, 24)
    """Channels at 4, 8, 16, 32, 64 pixels: the output is 4·2^(len-1) pixels square."""
    frac_bits: int = FRAC
    """Fixed-point precision of weights and activations (12 for the first placeholder, 16 for trained ones)."""

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)


def lrelu(x: np.ndarray) -> np.ndarray:
    """Leaky ReLU with slope 13/64 ≈ 0.2, in integers."""
    return np.where(x >= 0, x, (x * 13) >> 6)


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, frac: int = FRAC) -> np.ndarray:
    return (exact_matmul(weight, x[:, None])[:, 0] >> frac) + bias


def modulate(weight: np.ndarray, style: np.ndarray, demodulate: bool, frac: int = FRAC) -> np.ndarray:
    """weight (O, C, k, k) scaled per input channel by style (C,), then per output channel to unit norm."""
    modulated = (weight * style[None, :, None, None]) >> frac
    if not demodulate:
        return modulated
    flat = modulated.reshape(modulated.shape[0], -1)
    norms = np.array([max(isqrt(int(np.dot(row, row))), 1) for row in flat], dtype=np.int64)
    return (modulated << frac) // norms[:, None, None, None]


EXACT_FLOAT = 1 << 53


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product, through float64 BLAS when that is provably exact.

    If |a|·|b|·inner < 2^53, every partial sum is an integer float64 represents
    exactly, so the result is exact whatever order the BLAS adds in (and fast);
    otherwise numpy's (slow) int64 product is used.
    """
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound < EXACT_FLOAT:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def conv(x: np.ndarray, weight: np.ndarray, frac: int = FRAC) -> np.ndarray:
    """'same' convolution of x (C, H, W) with weight (O, C, k, k), by im2col and an exact matmul."""
    out_channels, channels, k, _ = weight.shape
    height, width = x.shape[1:]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    patches = np.stack([padded[:, i : i + height, j : j + width] for i in range(k) for j in range(k)], axis=1).reshape(
        channels * k * k, height * width
    )
    return (exact_matmul(weight.reshape(out_channels, -1), patches) >> frac).reshape(out_channels, height, width)


def upsample(x: np.ndarray) -> np.ndarray:
    return x.repeat(2, axis=-2).repeat(2, axis=-1)


def smooth_upsample(x: np.ndarray) -> np.ndarray:
    """Nearest 2x upsampling followed by a [1, 2, 1]/4 blur on each axis (StyleGAN's skip path filters too)."""
    x = upsample(x)
    for axis in (-2, -1):
        padded = np.concatenate([x.take([0], axis=axis), x, x.take([-1], axis=axis)], axis=axis)
        size = x.shape[axis]
        left = padded.take(range(0, size), axis=axis)
        mid = padded.take(range(1, size + 1), axis=axis)
        right = padded.take(range(2, size + 2), axis=axis)
        x = (left + 2 * mid + right) >> 2
    return x


class Generator:
    """Integer weights in a dict, as stored in `generator.safetensors`."""

    def __init__(self, config: GeneratorConfig, weights: dict[str, np.ndarray]):
        self.config = config
        self.w = {name: value.astype(np.int64) for name, value in weights.items()}
        self.frac = config.frac_bits

    def mapping(self, z: np.ndarray) -> np.ndarray:
        x = z
        for i in range(self.config.mapping_layers):
            x = lrelu(dense(x, self.w[f"mapping.{i}.weight"], self.w[f"mapping.{i}.bias"], self.frac))
        return x

    def styled_conv(self, x: np.ndarray, w: np.ndarray, name: str) -> np.ndarray:
        style = dense(w, self.w[f"{name}.affine.weight"], self.w[f"{name}.affine.bias"], self.frac)
        weight = modulate(self.w[f"{name}.weight"], style, True, self.frac)
        return lrelu(conv(x, weight, self.frac) + self.w[f"{name}.bias"][:, None, None])

    def to_rgb(self, x: np.ndarray, w: np.ndarray, name: str) -> np.ndarray:
        style = dense(w, self.w[f"{name}.affine.weight"], self.w[f"{name}.affine.bias"], self.frac)
        weight = modulate(self.w[f"{name}.weight"], style, False, self.frac)
        return conv(x, weight, self.frac) + self.w[f"{name}.bias"][:, None, None]

    def render(self, z: list[int]) -> np.ndarray:
        """z as integers at 2^12 (see `encoder.zvector`) -> (H, W, 3) uint8 image."""
        if len(z) != self.config.z_dim:
            raise ValueError(f"this generator takes z of {self.config.z_dim} numbers, not {len(z)}")
        z_vec = np.asarray(z, dtype=np.int64) << (self.frac - 12)
        w = self.mapping(z_vec)
        x = self.w["const"]
        x = self.styled_conv(x, w, "block0.conv1")
        rgb = self.to_rgb(x, w, "block0.rgb")
        for level in range(1, len(self.config.channels)):
            x = upsample(x)
            x = self.styled_conv(x, w, f"block{level}.conv0")
            x = self.styled_conv(x, w, f"block{level}.conv1")
            rgb = smooth_upsample(rgb) + self.to_rgb(x, w, f"block{level}.rgb")
        pixels = ((rgb + (1 << self.frac)) * 255) >> (self.frac + 1)
        return np.clip(pixels, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def random_weights(config: GeneratorConfig, seed: int) -> dict[str, np.ndarray]:
    """He-initialised weights in fixed point: an untrained generator of any shape (tests use one as a user's own)."""
    rng = np.random.default_rng(seed)
    one = 1 << config.frac_bits

    def q(shape, fan_in, gain=1.0):
        return np.rint(rng.standard_normal(shape) * gain / np.sqrt(fan_in) * one).astype(np.int32)

    w: dict[str, np.ndarray] = {}
    width = config.z_dim
    for i in range(config.mapping_layers):
        w[f"mapping.{i}.weight"] = q((config.w_dim, width), width, 1.4)
        w[f"mapping.{i}.bias"] = np.zeros(config.w_dim, np.int32)
        width = config.w_dim

    def styled(name, cin, cout, k, gain=1.0):
        w[f"{name}.affine.weight"] = q((cin, config.w_dim), config.w_dim, 0.5)
        w[f"{name}.affine.bias"] = np.full(cin, one, np.int32)
        w[f"{name}.weight"] = q((cout, cin, k, k), cin * k * k, gain)
        w[f"{name}.bias"] = q((cout,), 1, 0.1)

    channels = config.channels
    w["const"] = q((channels[0], 4, 4), 1, 1.0)
    styled("block0.conv1", channels[0], channels[0], 3)
    styled("block0.rgb", channels[0], 3, 1, gain=0.35)
    for level in range(1, len(channels)):
        styled(f"block{level}.conv0", channels[level - 1], channels[level], 3)
        styled(f"block{level}.conv1", channels[level], channels[level], 3)
        styled(f"block{level}.rgb", channels[level], 3, 1, gain=0.35 + 0.25 * level)
    return w


def save_generator(config: GeneratorConfig, weights: dict[str, np.ndarray], path: Path) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(weights.items())}, str(path))
    config_dict = asdict(config)
    config_dict["channels"] = list(config.channels)
    path.with_suffix(".json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")


def load_generator(path: Path) -> Generator:
    data = json.loads(path.with_suffix(".json").read_text())
    data["channels"] = tuple(data["channels"])
    return Generator(GeneratorConfig(**data), load_file(str(path)))


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG, deterministically (no metadata): equal pictures give equal bytes."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def save_png(image: np.ndarray, path: Path) -> bytes:
    """Write `png_bytes` of the picture and return them."""
    data = png_bytes(image)
    path.write_bytes(data)
    return data


def read_png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
