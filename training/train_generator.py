"""Train the released generator on procedural dog faces, then quantise it for the integer renderer.

    python -m training.train_generator [--steps 2500] [--seed 0] [--count 24000] [--init G.safetensors]
                                      [--eye-strength 40] [--out DIR/generator.safetensors]

Objective: the picture of z is known (`training.dogs` draws it from z), so the
generator is fitted to it directly, L1 on the pixels plus L1 on a 4x-downsampled
copy (the layout), both weighted up over the eyes (`--eye-strength`; without it
the generators drew fur where the eyes belong). This is the reconstruction half of a VAE with its encoder
replaced by the exact one; there is no adversary to balance and no posterior to
collapse, which is what makes it train on two CPU cores in well under an hour,
and it keeps every component of z in use (a VAE would leave most of 128 latent
dimensions unused, and z's that differ only there would collide).

`--init` fine-tunes an earlier generator of the same architecture instead of starting
from random weights (the released one is a chain of warm starts from the second
version, each pinned by digest in its record; BENCHMARKS.md, "Fourth version").
Reproducible from `--seed` (and the `--init` weights) on CPU (deterministic torch
ops, one data set per seed). Writes the integer weights, their config, a training
record and a preview grid (float network, integer renderer, the target dogs). To
release a run, copy its generator.safetensors/.json/.train.json into encoder/weights/
and update the digest in encoder/release.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from noseprint.encoder.generator import Generator, GeneratorConfig, load_generator, save_generator
from noseprint.encoder.release import network_digest
from noseprint.encoder.stylegan import StyleGenerator, from_integer, pixels, quantised_weights
from PIL import Image
from tqdm import tqdm

from training import dogs

RELEASED_CONFIG = GeneratorConfig(
    z_dim=128, w_dim=128, mapping_layers=3, channels=(128, 96, 64, 32, 16, 8), frac_bits=16
)
"""4x4 .. 128x128; the channels fall with resolution because the cartoons are flat colour at fine scales."""

THUMBNAIL_CONFIG = GeneratorConfig(z_dim=128, w_dim=32, mapping_layers=1, channels=(8, 8, 8), frac_bits=16)
"""The 16x16 thumbnail generator behind `prove --prove-image`: small enough to prove (946k rows; see
`circuits.image_circuit`), trained on the same dogs shrunk to 16x16."""


def _draw_chunk(args: tuple[np.ndarray, int]) -> np.ndarray:
    zs, size = args
    matrix = dogs.trait_matrix(zs.shape[1])
    return np.stack([dogs.dog_from_z(z, matrix, size) for z in zs])


def data_set(count: int, z_dim: int, seed: int, size: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(z, picture) pairs; drawn on every core, cached as .npy because drawing takes minutes."""
    if cache is not None and cache.exists():
        stored = np.load(cache)
        return stored["z"], stored["pictures"]
    rng = np.random.default_rng(seed)
    zs = np.stack([dogs.standard_z(rng, z_dim) for _ in range(count)]).astype(np.float32)
    chunks = [(chunk, size) for chunk in np.array_split(zs, max(1, count // 250))]
    with multiprocessing.get_context("spawn").Pool() as pool:
        pictures = np.concatenate(list(tqdm(pool.imap(_draw_chunk, chunks), total=len(chunks), desc="drawing dogs")))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, z=zs, pictures=pictures)
    return zs, pictures


def shrink(pictures: np.ndarray, size: int) -> np.ndarray:
    """Area-average (B, S, S, 3) uint8 pictures down to size x size (the thumbnail's targets); no-op at S."""
    factor = pictures.shape[1] // size
    if factor <= 1:
        return pictures
    blocks = pictures.reshape(len(pictures), size, factor, size, factor, 3).astype(np.float32)
    return np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)


def to_target(pictures: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> the rgb values whose `pixels` mapping gives them back: (p + 0.5)/127.5 - 1."""
    return torch.from_numpy(pictures).permute(0, 3, 1, 2).float().add(0.5).div(127.5).sub(1)


def loss_of(
    output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, weigh_layout: bool = True
) -> torch.Tensor:
    """L1 on the pixels plus L1 on the 4x-downsampled layout, each weighted by `weight` (normalised to its mean).

    The downsampled term is what moves a misplaced feature: its error falls smoothly as the
    feature slides towards where it belongs, where the pixel term only sees it wrong or right.
    (`weigh_layout=False` weights the pixel term alone: the first link of the released chain.)"""
    if weight is None:
        weight = torch.ones_like(output[:, :1])
    layout_weight = F.avg_pool2d(weight, 4) if weigh_layout else torch.ones_like(F.avg_pool2d(weight, 4))
    layout = (F.avg_pool2d(output, 4), F.avg_pool2d(target, 4), layout_weight)
    return sum(((a - b).abs() * w).sum() / (w.sum() * a.shape[1]) for a, b, w in ((output, target, weight), layout))


def eye_table(zs: np.ndarray, size: int) -> np.ndarray:
    """(N, 2, 3): each dog's two eyes as (x, y, radius) in size x size pixels."""
    matrix = dogs.trait_matrix(zs.shape[1])
    return np.array([dogs.eye_circles(dogs.traits_of(z, matrix), size) for z in zs], dtype=np.float32)


def eye_weight(eyes: np.ndarray, size: int, strength: float) -> torch.Tensor:
    """(B, 1, size, size): 1 everywhere plus `strength` in a Gaussian over each eye (sigma 0.8 radius).

    Why: the eyes are 2 % of the pixels and move with five traits, so under a plain L1
    loss the cheapest answer is fur where the eyes should be (the third version's first
    generator drew none). Weighting them makes the eyes as costly as the background."""
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    eyes_t = torch.from_numpy(eyes)
    x, y, r = (eyes_t[..., k][..., None, None] for k in range(3))
    distance = (grid[None, None, None, :] - x) ** 2 + (grid[None, None, :, None] - y) ** 2
    blobs = torch.exp(-distance / (2 * (0.8 * r) ** 2)).sum(1, keepdim=True)
    return 1 + strength * blobs


def deterministic(function):
    """Run `function` with torch's deterministic algorithms on (reproducible from the seed), then restore."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        previous = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # NaN-filling every new tensor costs 10% here
        try:
            return function(*args, **kwargs)
        finally:
            torch.use_deterministic_algorithms(previous[0])
            torch.utils.deterministic.fill_uninitialized_memory = previous[1]

    return wrapper


@deterministic
def train(
    config: GeneratorConfig,
    steps: int,
    seed: int,
    count: int,
    batch: int,
    lr: float,
    cache: Path | None,
    init: Path | None = None,
    eye_strength: float = 0.0,
    weigh_layout: bool = True,
) -> tuple[StyleGenerator, dict]:
    torch.manual_seed(seed)
    zs, pictures = data_set(count, config.z_dim, seed, max(config.resolution, 128), cache)
    pictures = shrink(pictures, config.resolution)
    # the last rows are held out, not the first: the first z's come from default_rng(seed), the stream that
    # also draws the trait matrix for seed 0, so z[k] is row k of the matrix and sits far out on one trait
    held_out = min(256, len(zs) // 4)
    first_held = len(zs) - held_out
    eyes = eye_table(zs, config.resolution) if eye_strength > 0 else None
    model = warm_start(config, init) if init is not None else StyleGenerator(config)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    curve: list[float] = []
    started = time.time()
    for step in (bar := tqdm(range(steps), desc="training generator")):
        for group in optimiser.param_groups:
            warm = min(1.0, (step + 1) / 100)
            group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        rows = torch.randint(0, first_held, (batch,), generator=generator).numpy()
        weight = None if eyes is None else eye_weight(eyes[rows], config.resolution, eye_strength)
        loss = loss_of(model(torch.from_numpy(zs[rows])), to_target(pictures[rows]), weight, weigh_layout)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        curve.append(float(loss.detach()))
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(curve[-25:]):.4f}")
    model.eval()
    held, held_eyes = held_out_errors(model, zs[first_held:], pictures[first_held:])
    record = dict(
        config=asdict(config),
        steps=steps,
        seed=seed,
        count=count,
        batch=batch,
        lr=lr,
        eye_strength=eye_strength,
        weigh_layout=weigh_layout,
        seconds=round(time.time() - started),
        loss_start=float(np.mean(curve[:25])),
        loss_end=float(np.mean(curve[-100:])),
        held_out_loss=held,
        held_out_eye_error=held_eyes,
        torch=torch.__version__,
        init=None if init is None else {"file": Path(init).name, "digest": network_digest(Path(init))},
    )
    return model, record


def held_out_errors(model: StyleGenerator, zs: np.ndarray, pictures: np.ndarray) -> tuple[float, float]:
    """(the plain loss, the mean |error| on the eyes alone) over held-out dogs.

    The second figure is what the eye weighting is for: the plain loss hardly moves when
    the eyes go missing (they are 2 % of the pixels)."""
    eyes = eye_table(zs, model.config.resolution)
    losses, eye_errors = [], []
    with torch.no_grad():
        for i in range(0, len(zs), 32):
            output, target = model(torch.from_numpy(zs[i : i + 32])), to_target(pictures[i : i + 32])
            losses.append(float(loss_of(output, target)))
            blobs = eye_weight(eyes[i : i + 32], model.config.resolution, 1.0) - 1
            eye_errors.append(float(((output - target).abs() * blobs).sum() / (blobs.sum() * 3)))
    return float(np.mean(losses)), float(np.mean(eye_errors))


def warm_start(config: GeneratorConfig, init: Path) -> StyleGenerator:
    """The float twin of an earlier generator of the same architecture, to train on from there.

    Why: most of what a generator learns (head, ears, eyes, shading) carries over between
    versions of the dog drawing, so fine-tuning the previous release reaches a given loss in
    a fraction of the CPU time of a fresh start. Reproducible all the same: the earlier
    weights are pinned by their digest in the training record."""
    earlier = load_generator(Path(init))
    if earlier.config != config:
        raise SystemExit(f"--init {init}: its architecture {earlier.config} is not {config}")
    return from_integer(earlier.config, earlier.w)


def preview(model: StyleGenerator, integer: Generator, count: int, seed: int, path: Path) -> float:
    """Float renders above integer renders above the procedural originals; returns the mean |float - int| pixel gap."""
    rng = np.random.default_rng(seed + 1)
    zs = np.stack([dogs.standard_z(rng, model.config.z_dim) for _ in range(count)])
    matrix = dogs.trait_matrix(model.config.z_dim)
    with torch.no_grad():
        floats = pixels(model(torch.from_numpy(zs).float())).numpy()
    ints = np.stack([integer.render([int(v) for v in np.floor(z * 4096)]) for z in zs])
    originals = shrink(np.stack([dogs.dog_from_z(z, matrix, 128) for z in zs]), model.config.resolution)
    rows = [np.concatenate(list(images), axis=1) for images in (floats, ints, originals)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return float(np.abs(floats.astype(int) - ints.astype(int)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=24000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--cache", type=Path, default=Path("bench/zoo/cache-dogs/dogs.npz"))
    parser.add_argument("--out", type=Path, default=Path("bench/zoo/cache-dogs/run/generator.safetensors"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--thumbnail", action="store_true", help="train the 16x16 thumbnail generator instead")
    parser.add_argument("--init", type=Path, default=None, help="start from this generator (same architecture)")
    parser.add_argument("--eye-strength", type=float, default=40.0, help="extra loss weight on the eyes (0: plain L1)")
    parser.add_argument(
        "--pixel-eyes-only", action="store_true", help="weight the eyes in the pixel term alone, not the layout term"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = THUMBNAIL_CONFIG if args.thumbnail else RELEASED_CONFIG
    model, record = train(
        config, args.steps, args.seed, args.count, args.batch, args.lr, args.cache, args.init, args.eye_strength,
        weigh_layout=not args.pixel_eyes_only,
    )  # fmt: skip
    weights = quantised_weights(model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_generator(config, {k: v.astype(np.int32) for k, v in weights.items()}, args.out)
    record["float_vs_integer_mean_pixel_gap"] = preview(
        model, Generator(config, weights), 8, args.seed, args.out.with_suffix(".preview.png")
    )
    args.out.with_suffix(".train.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
