"""Does the released generator draw pictures people can read? Smoothness, diversity, render time.

    python -m bench.generator_quality [--generator encoder/weights/generator.safetensors] [--count 1000]

- Smoothness: for 40 random z and target z-cosines from 1.0 down to 0, a partner z
  at exactly that cosine; mean absolute pixel distance and perceptual-hash
  (imagehash pHash, 64 bits) distance between the two pictures, plotted against
  the cosine, and a strip of pictures per cosine for a person to look at.
- Diversity: pHash distances between all pairs of `--count` random z: the
  distribution, how many pairs fall under a near-collision threshold, and the
  closest pair side by side; the same for the colour-aware hash
  (`bench.picture_hash`: colour pHash, 192 bits, threshold 30; pHash + colorhash,
  106 bits, threshold 16).
- Render time: the integer renderer (what verify runs), seconds per picture.

Pictures for the statistics come from the float twin (batched torch), which matches
the integer renderer within one grey level (measured here and tested); the strips
are the integer renderer's. Figures go to docs/figures, numbers to
bench/results/generator_quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
import torch
from noseprint.encoder.generator import load_generator
from noseprint.encoder.stylegan import from_integer, pixels
from PIL import Image
from tqdm import tqdm

from bench.picture_hash import colour_phash, grey_phash, hamming, phash_colorhash
from training.dogs import standard_z

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
RESULTS = ROOT / "bench" / "results"
COSINES = (1.0, 0.99, 0.97, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.0)
NEAR_COLLISION = 10
"""pHash distances at or below 10 of 64 bits are commonly treated as 'the same picture'."""


def at_cosine(z: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A standardised z' whose cosine with the standardised z is exactly `cosine`."""
    noise = standard_z(rng, len(z))
    noise -= (noise @ z) / (z @ z) * z  # orthogonal to z, still mean 0
    noise *= np.linalg.norm(z) / np.linalg.norm(noise)
    partner = cosine * z + np.sqrt(max(0.0, 1 - cosine**2)) * noise
    return (partner - partner.mean()) / partner.std()


def render_batch(model, zs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [
                pixels(model(torch.from_numpy(chunk).float())).numpy()
                for chunk in np.array_split(zs, max(1, len(zs) // 64))
            ]
        )


def smoothness(model, integer, rng: np.random.Generator, figure: Path) -> dict:
    bases = np.stack([standard_z(rng, model.config.z_dim) for _ in range(40)])
    rows = {}
    for cosine in COSINES:
        partners = np.stack([at_cosine(z, cosine, rng) for z in bases])
        a, b = render_batch(model, bases), render_batch(model, partners)
        pixel = np.abs(a.astype(int) - b.astype(int)).mean(axis=(1, 2, 3))
        hashes = [hamming(grey_phash(x), grey_phash(y)) for x, y in zip(a, b, strict=True)]
        rows[cosine] = dict(pixel_mean=float(pixel.mean()), pixel_std=float(pixel.std()),
                            phash_mean=float(np.mean(hashes)), phash_max=int(np.max(hashes)))  # fmt: skip
    strip_rows = []
    for z in bases[:4]:
        strip_rows.append(np.concatenate([integer.render(to_int(at_cosine(z, c, rng))) for c in COSINES], axis=1))
    Image.fromarray(np.concatenate(strip_rows, axis=0)).save(figure.with_name("generator_cosine_strips.png"))
    plot_smoothness(rows, figure)
    return rows


def to_int(z: np.ndarray) -> list[int]:
    return [int(v) for v in np.floor(z * 4096)]


def plot_smoothness(rows: dict, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cosines = list(rows)
    fig, left = plt.subplots(figsize=(6, 3.6))
    left.errorbar(cosines, [rows[c]["pixel_mean"] for c in cosines], yerr=[rows[c]["pixel_std"] for c in cosines],
                  marker="o", color="tab:blue", label="mean |pixel difference|")  # fmt: skip
    left.set_xlabel("z-cosine of the pair")
    left.set_ylabel("mean |pixel difference| (0-255)", color="tab:blue")
    left.invert_xaxis()
    right = left.twinx()
    right.plot(cosines, [rows[c]["phash_mean"] for c in cosines], marker="s", color="tab:red", label="pHash distance")
    right.axhline(NEAR_COLLISION, color="tab:red", linestyle=":", linewidth=1)
    right.set_ylabel("pHash distance (of 64 bits)", color="tab:red")
    left.set_title("Picture distance grows with z distance")
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)


def pairwise_hamming(bits: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances of (N, B) 0/1 rows, upper triangle, as one vector."""
    ones = bits.astype(np.int32)
    distances = ones @ (1 - ones).T + (1 - ones) @ ones.T
    return distances[np.triu_indices(len(bits), k=1)]


def diversity(model, count: int, rng: np.random.Generator, figure: Path) -> dict:
    zs = np.stack([standard_z(rng, model.config.z_dim) for _ in range(count)])
    pictures = render_batch(model, zs)
    pairs = np.triu_indices(count, k=1)
    result = {}
    hashes_to_try = (
        ("phash", grey_phash, NEAR_COLLISION),
        ("colour_phash", colour_phash, 30),
        ("phash_colorhash", phash_colorhash, 16),
    )
    for label, hash_of, near in hashes_to_try:
        hashes = np.array([hash_of(p) for p in tqdm(pictures, desc=f"hashing ({label})", leave=False)])
        distances = pairwise_hamming(hashes)
        k = int(np.argmin(distances))
        i, j = int(pairs[0][k]), int(pairs[1][k])
        Image.fromarray(np.concatenate([pictures[i], pictures[j]], axis=1)).save(
            figure.with_name(f"generator_closest_pair_{label}.png")
        )
        result[label] = dict(
            bits=int(hashes.shape[1]),
            count=count,
            pairs=int(len(distances)),
            mean=float(distances.mean()),
            percentiles={str(p): float(np.percentile(distances, p)) for p in (0.1, 1, 5, 50)},
            minimum=int(distances.min()),
            near_collision_threshold=near,
            near_collisions=int((distances <= near).sum()),
            closest_pair_z_cosine=float(zs[i] @ zs[j] / (np.linalg.norm(zs[i]) * np.linalg.norm(zs[j]))),
        )
        if label == "phash":
            plot_histogram(distances, figure)
    return result


def plot_histogram(distances: np.ndarray, figure: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 3.2))
    axis.hist(distances, bins=range(0, 65), color="tab:green")
    axis.axvline(NEAR_COLLISION, color="tab:red", linestyle=":", label=f"near collision (≤ {NEAR_COLLISION})")
    axis.set_xlabel("pHash distance between pictures of two random z (of 64 bits)")
    axis.set_ylabel("pairs")
    axis.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)


def render_seconds(integer, rng: np.random.Generator, repeats: int = 5) -> float:
    zs = [to_int(standard_z(rng, integer.config.z_dim)) for _ in range(repeats)]
    started = time.perf_counter()
    for z in zs:
        integer.render(z)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", type=Path, default=release.GENERATOR)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    integer = load_generator(args.generator)
    model = from_integer(integer.config, integer.w)
    zs = [standard_z(rng, integer.config.z_dim) for _ in range(8)]
    gap = float(
        np.mean([np.abs(integer.render(to_int(z)).astype(int) - render_batch(model, z[None])[0]).mean() for z in zs])
    )
    results = dict(
        generator=str(args.generator),
        resolution=integer.config.resolution,
        float_twin_mean_pixel_gap=gap,
        render_seconds=render_seconds(integer, rng),
        smoothness=smoothness(model, integer, rng, FIGURES / "generator_smoothness.png"),
        diversity=diversity(model, args.count, rng, FIGURES / "generator_diversity.png"),
    )
    (RESULTS / "generator_quality.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
