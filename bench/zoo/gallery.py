"""Can a person match each zoo derivative to its base by its picture? A gallery and a measured proxy.

    python -m bench.zoo.gallery [--zoo bench/zoo/cache] [--out docs/figures/zoo_gallery.png]

Fingerprints every zoo model the way `noseprint fingerprint` does (released encoder
and generator), draws one column per base model (the base on top, its derivatives
below), and measures a proxy for a person's eye: for every derived model, the base
whose picture is strictly nearest by perceptual hash must be its own (a tie counts as a miss): by imagehash's pHash
(grey levels, 64 bits) and by its colour-aware variants (`bench.picture_hash`).
The same count on the procedural dogs of the same z's (`training.dogs`, what the
generator was trained to draw) tells the generator's share of a miss from the
data set's. Results go to bench/results/zoo_gallery.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from noseprint.lineage.fingerprint import fingerprint_model
from noseprint.lineage.gallery import grid
from PIL import Image
from tqdm import tqdm

from bench.picture_hash import colour_phash, grey_phash, hamming, lab_distance, lab_thumbnail, phash_colorhash
from training import dogs as dog_traits

ROOT = Path(__file__).resolve().parents[2]
ZOO = Path(__file__).parent / "cache"
ROWS = ("base", "sft", "cpt", "lora", "dpo", "int8", "prune20", "vocab-ext", "permute_heads", "rotate_qk", "vocab-perm")
"""The gallery's rows: the base, the trained derivatives, three of the re-parametrisations."""


def fingerprints(zoo: Path, members: list[dict], workdir: Path) -> dict[str, Path]:
    """Fingerprint every member; name -> fingerprint.png."""
    pictures = {}
    for member in tqdm(members, desc="fingerprinting the zoo"):
        out = workdir / member["name"]
        fingerprint_model(zoo / member["name"], out)
        pictures[member["name"]] = out / "fingerprint.png"
    return pictures


def load_pictures(pictures: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: np.asarray(Image.open(path).convert("RGB")) for name, path in pictures.items()}


def procedural_dogs(pictures: dict[str, Path]) -> dict[str, np.ndarray]:
    """The training data's picture of each member's z (read from fingerprint.json beside the picture)."""
    matrix = None
    dogs = {}
    for name, path in pictures.items():
        z = np.asarray(json.loads((path.parent / "fingerprint.json").read_text())["z"], dtype=np.float64) / 4096
        matrix = dog_traits.trait_matrix(len(z)) if matrix is None else matrix
        dogs[name] = dog_traits.dog_from_z(z, matrix)
    return dogs


def nearest_base(pictures: dict[str, np.ndarray], members: list[dict], hash_of=grey_phash, distance=hamming) -> dict:
    """Nearest base by `hash_of` and `distance` for every derived member, and the gap to the nearest wrong base."""
    hashes = {name: hash_of(picture) for name, picture in pictures.items()}
    bases = sorted({m["base"] for m in members})
    rows = []
    for member in members:
        if member["name"] == member["base"]:
            continue
        distances = {base: round(distance(hashes[member["name"]], hashes[base]), 3) for base in bases}
        found = min(distances, key=distances.get)
        wrong = min(d for base, d in distances.items() if base != member["base"])
        rows.append(
            dict(
                name=member["name"],
                base=member["base"],
                found=found,
                own=distances[member["base"]],
                nearest_other=wrong,
            )
        )
    correct = sum(r["own"] < r["nearest_other"] for r in rows)  # strictly nearer: a tie is not a match
    return dict(
        derived=len(rows), correct=correct, worst_gap=min(r["nearest_other"] - r["own"] for r in rows), rows=rows
    )


def draw(pictures: dict[str, Path], members: list[dict], out: Path) -> Path:
    """One column per base; row r is ROWS[r] (blank where a family lacks that derivative)."""
    bases = sorted({m["base"] for m in members})
    by_kind = {(m["base"], m["kind"] if m["name"] != m["base"] else "base"): m["name"] for m in members}
    blank = out.parent / ".blank.png"
    Image.new("RGB", (8, 8), "white").save(blank)
    cells = []
    for kind in ROWS:
        for base in bases:
            name = by_kind.get((base, kind))
            cells.append((name or "", pictures[name] if name else blank))
    path = grid(
        cells, out, columns=len(bases), size=128, caption="columns: base models (top) and their derivatives below"
    )
    blank.unlink()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=ZOO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "zoo_gallery.png")
    parser.add_argument("--keep", type=Path, help="also copy every picture into this folder")
    args = parser.parse_args()
    members = json.loads((args.zoo / "zoo.json").read_text())
    with tempfile.TemporaryDirectory() as workdir:
        pictures = fingerprints(args.zoo, members, Path(workdir))
        draw(pictures, members, args.out)
        drawn, dogs = load_pictures(pictures), procedural_dogs(pictures)
        results = {
            "phash": nearest_base(drawn, members),
            "colour_phash": nearest_base(drawn, members, colour_phash),
            "phash_colorhash": nearest_base(drawn, members, phash_colorhash),
            "lab16_pixels": nearest_base(drawn, members, lab_thumbnail, lab_distance),
            "procedural_dogs_phash": nearest_base(dogs, members),
            "procedural_dogs_colour_phash": nearest_base(dogs, members, colour_phash),
        }
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name, path in pictures.items():
                shutil.copyfile(path, args.keep / f"{name}.png")
    (ROOT / "bench" / "results" / "zoo_gallery.json").write_text(json.dumps(results, indent=1) + "\n")
    for label, result in results.items():
        print(f"{label}: nearest base is the right one for {result['correct']} of {result['derived']} derived "
              f"models; smallest gap (nearest wrong base minus own base): {result['worst_gap']}")  # fmt: skip
        for row in result["rows"]:
            if row["own"] >= row["nearest_other"]:
                print(f"  wrong or tied: {row['name']} -> {row['found']} ({row['own']} vs {row['nearest_other']})")


if __name__ == "__main__":
    main()
