"""Simulated derivatives: how often does a perceptual hash pick the right base, as the z-cosine falls?

    python -m bench.derivative_hash [--pictures generator|dogs] [--trials 300] [--wrong-cosine 0.2]

The zoo has 61 derived models, most of them re-parametrisations at z-cosine ~1;
only a dozen (continued pretraining, LoRA merges, vocabulary changes) sit at
0.88-0.95, too few to estimate a failure rate. This bench builds many more: for
each trial a base z, a derivative z at exactly the target cosine (a random
direction, as `bench.generator_quality.at_cosine`), and four other bases (the
zoo's number of wrong candidates) at `--wrong-cosine` to the base (0.2: the zoo's
unrelated models are not independent draws, their z-cosine reaches 0.21); it counts how often the derivative's
picture is nearest its own base's by imagehash's pHash (grey, 64 bits) and by the
colour pHash (YCbCr, 192 bits, `bench.picture_hash`).

`--pictures dogs` measures the procedural training data itself (`training.dogs`),
which bounds what any generator trained on it can reach; `--pictures generator`
measures the released generator (its float twin, within a grey level of the
integer renderer). Results go to bench/results/derivative_hash_<pictures>.json, and
docs/figures/derivative_strips_<pictures>.png shows four trials for the eye: each
row a base, its derivatives at z-cosine 0.95, 0.9 and 0.85, then its four wrong bases.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
from noseprint.encoder.generator import load_generator
from noseprint.encoder.stylegan import load_float
from PIL import Image
from tqdm import tqdm

from bench.generator_quality import at_cosine, render_batch
from bench.picture_hash import colour_phash, grey_phash, hamming
from training import dogs

ROOT = Path(__file__).resolve().parents[1]
COSINES = (0.85, 0.88, 0.9, 0.95)
WRONG_BASES = 4
HASHES = {"phash": grey_phash, "colour_phash": colour_phash}


def picture_maker(kind: str, z_dim: int, generator: Path = release.GENERATOR):
    """zs (N, z_dim) -> pictures (N, 128, 128, 3) uint8."""
    if kind == "dogs":
        matrix = dogs.trait_matrix(z_dim)
        return lambda zs: np.stack([dogs.dog_from_z(z, matrix) for z in zs])
    model = load_float(generator).eval()
    return lambda zs: render_batch(model, zs)


def other_bases(base: np.ndarray, wrong_cosine: float, rng: np.random.Generator) -> np.ndarray:
    """The base and WRONG_BASES unrelated bases at `wrong_cosine` to it."""
    return np.stack([base, *(at_cosine(base, wrong_cosine, rng) for _ in range(WRONG_BASES))])


def trial_rates(make_pictures, z_dim: int, trials: int, rng: np.random.Generator, wrong_cosine: float) -> dict:
    """For each cosine: the share of trials where the own base is strictly nearest, and the mean own distance."""
    results = {}
    for cosine in COSINES:
        hits = {name: 0 for name in HASHES}
        own = {name: [] for name in HASHES}
        for _ in tqdm(range(trials), desc=f"z-cosine {cosine}", leave=False):
            bases = other_bases(dogs.standard_z(rng, z_dim), wrong_cosine, rng)
            derived = at_cosine(bases[0], cosine, rng)
            pictures = make_pictures(np.concatenate([bases, derived[None]]))
            for name, hash_of in HASHES.items():
                hashes = [hash_of(picture) for picture in pictures]
                distances = [hamming(hashes[-1], h) for h in hashes[:-1]]
                hits[name] += distances[0] < min(distances[1:])
                own[name].append(distances[0])
        results[str(cosine)] = {
            name: dict(right_base=hits[name] / trials, own_distance_mean=float(np.mean(own[name]))) for name in HASHES
        }
    return results


def strips(make_pictures, z_dim: int, rng: np.random.Generator, out: Path, wrong_cosine: float, rows: int = 4) -> None:
    """Rows of base | derivatives at each cosine (falling) | wrong bases, with a gap before the wrong bases."""
    lines = []
    for _ in range(rows):
        bases = other_bases(dogs.standard_z(rng, z_dim), wrong_cosine, rng)
        derived = np.stack([at_cosine(bases[0], cosine, rng) for cosine in sorted(COSINES, reverse=True)])
        pictures = make_pictures(np.concatenate([bases[:1], derived, bases[1:]]))
        gap = np.full((pictures.shape[1], 16, 3), 255, dtype=np.uint8)
        own, wrong = pictures[: 1 + len(COSINES)], pictures[1 + len(COSINES) :]
        lines.append(np.concatenate([*own, gap, *wrong], axis=1))
    Image.fromarray(np.concatenate(lines, axis=0)).save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", choices=("generator", "dogs"), default="generator")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wrong-cosine", type=float, default=0.2)
    parser.add_argument("--generator", type=Path, default=release.GENERATOR)
    args = parser.parse_args()
    z_dim = load_generator(args.generator).config.z_dim
    make_pictures = picture_maker(args.pictures, z_dim, args.generator)
    rng = np.random.default_rng(args.seed)
    results = trial_rates(make_pictures, z_dim, args.trials, rng, args.wrong_cosine)
    record = dict(
        pictures=args.pictures, trials=args.trials, wrong_bases=WRONG_BASES, wrong_cosine=args.wrong_cosine,
        rates=results,
    )  # fmt: skip
    strips(make_pictures, z_dim, np.random.default_rng(args.seed + 1),
           ROOT / "docs" / "figures" / f"derivative_strips_{args.pictures}.png", args.wrong_cosine)  # fmt: skip
    out = ROOT / "bench" / "results" / f"derivative_hash_{args.pictures}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(
        f"{args.pictures}: {args.trials} trials per cosine, {WRONG_BASES} wrong bases at z-cosine {args.wrong_cosine}"
    )
    for cosine, row in results.items():
        cells = "  ".join(f"{name}: right {r['right_base']:.1%} (own distance {r['own_distance_mean']:.1f})"
                          for name, r in row.items())  # fmt: skip
        print(f"  z-cosine {cosine}: {cells}")


if __name__ == "__main__":
    main()
