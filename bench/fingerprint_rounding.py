"""Issue 21: what leaving the circuit's rounding out of the unproven fingerprint changes, on the zoo.

    python -m bench.fingerprint_rounding [--zoo bench/zoo/cache]

For every zoo model, z as the landed main computed it (every tensor at unit RMS rounded to 2^-8, whole
tensors, float64: what a proof's graph receives) and as `noseprint fingerprint` computes it now (each matrix
read once in float32 blocks, no rounding). Prints the z-cosine between the two (smallest, median), the
largest |Δz| in units of 2^-12, and, over every pair of zoo models, how far the pair's z-cosine moved and how
many z-only verdicts changed.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
import torch
from noseprint.encoder.network import load_encoder
from noseprint.encoder.zvector import as_floats, cosine
from noseprint.lineage.fingerprint import dequantised, fingerprint_model, z_from_raw_float
from noseprint.lineage.verdict import verdict
from noseprint.models.invariants import layer_terms, standardise
from noseprint.models.weights import open_model


def rounded_z(folder: Path, encoder: torch.nn.Module) -> list[int]:
    """The landed main's z: the fingerprinted layers whole, every tensor quantised at unit RMS, float64."""
    model = open_model(folder, 16, None, False)
    unit = dequantised(model.embedding)
    circuit = []
    for position, shape in enumerate(model.layout.layers):
        weights = model.load_layer(position)
        circuit.append(layer_terms(unit, {role: dequantised(w) for role, w in weights.items()}, shape))
    with torch.no_grad():
        z_raw = encoder(torch.from_numpy(standardise(np.concatenate(circuit))).unsqueeze(0)).squeeze(0).numpy()
    return z_from_raw_float(z_raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=Path(__file__).parent / "zoo" / "cache")
    args = parser.parse_args()
    encoder = load_encoder(release.ENCODER).double()
    folders = sorted(p for p in args.zoo.iterdir() if (p / "config.json").is_file())
    before, after = {}, {}
    with tempfile.TemporaryDirectory(prefix="np-rounding-") as tmp:
        for folder in folders:
            before[folder.name] = as_floats(rounded_z(folder, encoder))
            after[folder.name] = as_floats(fingerprint_model(folder, Path(tmp) / folder.name, progress=False)["z"])
    own = sorted(cosine(before[name], after[name]) for name in before)
    largest = max(float(np.abs(np.subtract(before[name], after[name])).max()) for name in before) * 2**12
    moved, changed = 0.0, 0
    for a, b in itertools.combinations(sorted(before), 2):
        old, new = cosine(before[a], before[b]), cosine(after[a], after[b])
        moved = max(moved, abs(new - old))
        changed += verdict(None, old) != verdict(None, new)
    pairs = len(before) * (len(before) - 1) // 2
    print(f"{len(before)} zoo models: z-cosine rounded vs one pass: smallest {own[0]:.6f}, median "
          f"{own[len(own) // 2]:.6f}; largest |dz| {largest:.0f} / 2^12")  # fmt: skip
    print(f"{pairs} pairs: largest change of a pair's z-cosine {moved:.6f}; z-only verdicts changed: {changed}")


if __name__ == "__main__":
    main()
