"""`noseprint fingerprint`: the picture, z and the raw invariants in seconds, without a proof.

z comes from the same graph the circuit proves, run in float64 on the same quantised
committed values (blinding lines do not reach the output), so it agrees with a later
proof's z to about the circuit's precision (cosine ~0.9997, BENCHMARKS.md). The raw
invariant terms are written beside it: they are private (they leak information about
the weights), useful for comparing one's own models.

The weights are streamed (`models.streamed`): each layer is read twice, block by block from the
memory-mapped files, once for the raw terms and each tensor's RMS, once for the circuit's values
(quantised at the whole tensor's unit RMS, as the commitment quantises them), so memory stays bounded
at any model size and the time is close to that of reading the needed bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from circuits.commitment import quantise
from circuits.settings import INPUT_SCALE
from core.bundle import TOKENS_FILE
from core.fileio import staged_directory
from core.sources import FINGERPRINT_FORMAT, FINGERPRINT_PICTURE, FINGERPRINT_RECORD, INVARIANTS_FILE
from encoder import release
from encoder.generator import load_generator, save_png
from encoder.network import load_encoder
from encoder.zvector import Z_FRAC_BITS
from models.invariants import standardise
from models.streamed import BlockStats, layer_weight_count, stream_threads, streamed_layer_terms
from models.tokens import tokens_to_json
from models.weights import DEFAULT_TOKENS, OpenModel, open_model

PROGRESS_DELAY_S = 2.0
"""Show a progress bar (on stderr) only for fingerprints that take longer than this."""
STREAMED_PASSES = 2


def dequantised(weights: np.ndarray) -> np.ndarray:
    """The values the circuit receives: unit-RMS, quantised at the input scale, back in real units."""
    return quantise(weights, INPUT_SCALE).astype(np.float64) / float(1 << INPUT_SCALE)


def dequantised_block(block: np.ndarray, rms: float) -> np.ndarray:
    """`dequantised` of a block of a tensor whose whole RMS is `rms`, bit for bit (quantise's rint(W / rms · 2^s),
    then / 2^s: dividing by rms / 2^s rounds exactly as dividing by rms and scaling by the power of two), done in
    place on the block, which the streamed reader allocated for this pass alone."""
    scale = float(1 << INPUT_SCALE)
    if rms > 0:
        np.divide(block, rms / scale, out=block)
    else:
        block *= scale
    np.rint(block, out=block)
    block *= 1.0 / scale
    return block


def streamed_terms(model: OpenModel, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(raw terms, circuit terms) of every fingerprinted layer, each layer streamed twice: once for the raw
    terms and every tensor's RMS, once for the circuit's values, quantised at that RMS. The layers run side by
    side, one thread each (numpy and torch release the GIL), with single-threaded BLAS (`stream_threads`)."""
    unit = dequantised(model.embedding)
    positions = range(len(model.layout.layers))
    total = STREAMED_PASSES * sum(layer_weight_count(shape) for shape in model.layout.layers)
    workers = max(1, min(len(positions), os.cpu_count() or 1))
    with stream_threads(), tqdm(total=total, unit="w", unit_scale=True, desc="fingerprint",
                                delay=PROGRESS_DELAY_S, disable=not progress, leave=False) as bar:  # fmt: skip
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda position: _layer_terms(model, position, unit, bar.update), positions))
    return np.concatenate([raw for raw, _ in results]), np.concatenate([circuit for _, circuit in results])


def _layer_terms(
    model: OpenModel, position: int, unit: np.ndarray, on_block: Callable[[int], object]
) -> tuple[np.ndarray, np.ndarray]:
    shape = model.layout.layers[position]
    weights = model.lazy_layer(position)
    stats = BlockStats()
    raw = streamed_layer_terms(model.embedding, weights, shape, stats=stats, on_block=on_block)
    rms = {role: stats.rms(role) for role in stats.counts}

    def circuit_values(role: str, block: np.ndarray) -> np.ndarray:
        return dequantised_block(block, rms[role])

    return raw, streamed_layer_terms(unit, weights, shape, values=circuit_values, on_block=on_block)


def z_from_raw_float(z_raw: np.ndarray) -> list[int]:
    """Standardise and fix to 2^12, as `encoder.zvector` does for the proven integers."""
    centred = z_raw - z_raw.mean()
    std = float(np.sqrt((centred**2).mean()))
    z = centred / std if std > 0 else centred
    return [int(v) for v in np.floor(z * (1 << Z_FRAC_BITS))]


def fingerprint_model(
    model_dir: Path,
    out: Path,
    token_count: int = DEFAULT_TOKENS,
    tokens_file: Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Streamed block by block: memory does not grow with the model (`streamed_terms`)."""
    model = open_model(model_dir, token_count, tokens_file, allow_pickle=False)
    terms, circuit_terms = streamed_terms(model, progress)
    encoder = load_encoder(release.ENCODER).double()
    standardised = torch.from_numpy(standardise(circuit_terms))
    with torch.no_grad():
        z_raw = encoder(standardised.unsqueeze(0)).squeeze(0).numpy()
    z = z_from_raw_float(z_raw)
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
