"""`noseprint fingerprint`: the picture, z and the raw invariants in seconds, without a proof.

z comes from the same graph the circuit proves, run in float64 on the same quantised
committed values (blinding lines do not reach the output), so it agrees with a later
proof's z to about the circuit's precision (cosine ~0.9997, BENCHMARKS.md). The raw
invariant terms are written beside it: they are private (they leak information about
the weights), useful for comparing one's own models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from circuits.graph import FingerprintCircuit
from circuits.settings import INPUT_SCALE
from encoder import release
from encoder.generator import load_generator, save_png
from encoder.network import load_encoder
from encoder.zvector import Z_FRAC_BITS
from noseprint.fileio import staged_directory
from prover.invariants import invariant_terms
from prover.pipeline import DEFAULT_TOKENS, committed_inputs, read_model
from prover.tokens import tokens_to_json

FORMAT = "noseprint-fingerprint"


def z_from_raw_float(z_raw: np.ndarray) -> list[int]:
    """Standardise and fix to 2^12, as `encoder.zvector` does for the proven integers."""
    centred = z_raw - z_raw.mean()
    std = float(np.sqrt((centred**2).mean()))
    z = centred / std if std > 0 else centred
    return [int(v) for v in np.floor(z * (1 << Z_FRAC_BITS))]


def fingerprint_model(
    model_dir: Path, out: Path, token_count: int = DEFAULT_TOKENS, tokens_file: Path | None = None, force: bool = False
) -> dict:
    model = read_model(model_dir, token_count, tokens_file, allow_pickle=False)
    committed, _ = committed_inputs(
        model, model.layout, {p.name: [0] * p.blinding_count for p in model.layout.pieces()}
    )
    graph = FingerprintCircuit(model.layout, load_encoder(release.ENCODER)).double()
    with torch.no_grad():
        z_raw = graph(*[torch.from_numpy(c.astype(np.float64) / 2**INPUT_SCALE) for c in committed]).numpy()
    z = z_from_raw_float(z_raw)
    terms = invariant_terms(model.embedding, model.layers, list(model.layout.layers))
    image = load_generator(release.GENERATOR).render(z)
    record = {
        "format": FORMAT,
        "version": 1,
        "model_type": model.model_type,
        "fingerprinted_layers": model.layer_indices,
        "encoder_digest": release.network_digest(release.ENCODER),
        "generator_digest": release.network_digest(release.GENERATOR),
        "z": z,
        "z_frac_bits": Z_FRAC_BITS,
    }
    with staged_directory(out, force) as stage:
        save_png(image, stage / "fingerprint.png")
        np.save(stage / "invariants.npy", terms)
        (stage / "tokens.json").write_text(json.dumps(tokens_to_json(model.tokens), indent=1))
        (stage / "fingerprint.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
