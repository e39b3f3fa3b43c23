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

from circuits.commitment import quantise
from circuits.settings import INPUT_SCALE
from core.bundle import TOKENS_FILE
from core.fileio import staged_directory
from core.sources import FINGERPRINT_FORMAT, FINGERPRINT_PICTURE, FINGERPRINT_RECORD, INVARIANTS_FILE
from encoder import release
from encoder.generator import load_generator, save_png
from encoder.network import load_encoder
from encoder.zvector import Z_FRAC_BITS
from models.invariants import layer_terms, standardise
from models.tokens import tokens_to_json
from models.weights import DEFAULT_TOKENS, open_model


def dequantised(weights: np.ndarray) -> np.ndarray:
    """The values the circuit receives: unit-RMS, quantised at the input scale, back in real units."""
    return quantise(weights, INPUT_SCALE).astype(np.float64) / float(1 << INPUT_SCALE)


def z_from_raw_float(z_raw: np.ndarray) -> list[int]:
    """Standardise and fix to 2^12, as `encoder.zvector` does for the proven integers."""
    centred = z_raw - z_raw.mean()
    std = float(np.sqrt((centred**2).mean()))
    z = centred / std if std > 0 else centred
    return [int(v) for v in np.floor(z * (1 << Z_FRAC_BITS))]


def fingerprint_model(
    model_dir: Path, out: Path, token_count: int = DEFAULT_TOKENS, tokens_file: Path | None = None, force: bool = False
) -> dict:
    """One layer in memory at a time: a 7B checkpoint fingerprints in the memory of one layer."""
    model = open_model(model_dir, token_count, tokens_file, allow_pickle=False)
    unit = dequantised(model.embedding)
    raw_terms, circuit_terms = [], []
    for position, shape in enumerate(model.layout.layers):
        weights = model.load_layer(position)
        raw_terms.append(layer_terms(model.embedding, weights, shape))
        for role in list(weights):  # replace in place: never two float copies of a layer
            weights[role] = dequantised(weights[role])
        circuit_terms.append(layer_terms(unit, weights, shape))
        del weights
    encoder = load_encoder(release.ENCODER).double()
    standardised = torch.from_numpy(standardise(np.concatenate(circuit_terms)))
    with torch.no_grad():
        z_raw = encoder(standardised.unsqueeze(0)).squeeze(0).numpy()
    z = z_from_raw_float(z_raw)
    terms = np.concatenate(raw_terms)
    image = load_generator(release.GENERATOR).render(z)
    record = {
        "format": FINGERPRINT_FORMAT,
        "version": 1,
        "model_type": model.model_type,
        "fingerprinted_layers": model.layer_indices,
        "encoder_digest": release.network_digest(release.ENCODER),
        "generator_digest": release.network_digest(release.GENERATOR),
        "z": z,
        "z_frac_bits": Z_FRAC_BITS,
    }
    with staged_directory(out, force) as stage:
        save_png(image, stage / FINGERPRINT_PICTURE)
        np.save(stage / INVARIANTS_FILE, terms)
        (stage / TOKENS_FILE).write_text(json.dumps(tokens_to_json(model.tokens), indent=1))
        (stage / FINGERPRINT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record
