"""`noseprint fingerprint`: the picture, z and the raw invariants in seconds, without a proof.

z is the released encoder's output on the standardised invariant terms of the weights as stored (float32
block products, summed in float64). A proof feeds the same graph the committed values instead: each tensor
at unit RMS (a positive factor per term, which standardising removes exactly) and rounded to 2^-8 of that
RMS. The fingerprint leaves the rounding out, so that it reads every weight once (rounding at a tensor's
RMS needs the whole tensor read first, hence a second pass): the difference is well inside the one between a
proof's z and the float graph, and changes no verdict over the zoo (`bench.fingerprint_rounding`, BENCHMARKS.md;
tests/test_streamed_reading.py holds the bound). The raw invariant terms are written beside z: they are private
(they leak information about the weights), useful for comparing one's own models.

The weights are streamed (`models.streamed`): each matrix of the two fingerprinted layers is read once, block
by block from the memory-mapped files, so memory stays bounded at any model size and the time is close to
that of reading the needed bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
import torch
from noseprint.circuits.commitment import quantise
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.core.fingerprint_folder import FingerprintRecord, write_folder
from noseprint.encoder.generator import load_generator, png_bytes
from noseprint.encoder.network import load_encoder
from noseprint.encoder.zvector import Z_FRAC_BITS
from noseprint.models.invariants import standardise
from noseprint.models.streamed import layer_weight_count, stream_threads, streamed_layer_terms
from noseprint.models.weights import DEFAULT_TOKENS, OpenModel, open_model
from tqdm import tqdm

PROGRESS_DELAY_S = 2.0
"""Show a progress bar (on stderr) only for fingerprints that take longer than this."""


def dequantised(weights: np.ndarray) -> np.ndarray:
    """The values the circuit receives: unit-RMS, quantised at the input scale, back in real units."""
    return quantise(weights, INPUT_SCALE).astype(np.float64) / float(1 << INPUT_SCALE)


def streamed_terms(model: OpenModel, progress: bool = True) -> np.ndarray:
    """The raw terms of every fingerprinted layer, each matrix read once, block by block. The layers run side
    by side, one thread each (numpy and torch release the GIL), with single-threaded BLAS (`stream_threads`)."""
    positions = range(len(model.layout.layers))
    total = sum(layer_weight_count(shape) for shape in model.layout.layers)
    workers = max(1, min(len(positions), os.cpu_count() or 1))
    with stream_threads(), tqdm(total=total, unit="w", unit_scale=True, desc="fingerprint",
                                delay=PROGRESS_DELAY_S, disable=not progress, leave=False) as bar:  # fmt: skip
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda position: _layer_terms(model, position, bar.update), positions))
    return np.concatenate(results)


def _layer_terms(model: OpenModel, position: int, on_block: Callable[[int], object]) -> np.ndarray:
    weights = model.lazy_layer(position)
    return streamed_layer_terms(model.embedding, weights, model.layout.layers[position], on_block=on_block)


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
    terms = streamed_terms(model, progress)
    encoder = load_encoder(release.ENCODER).double()
    standardised = torch.from_numpy(standardise(terms))
    with torch.no_grad():
        z_raw = encoder(standardised.unsqueeze(0)).squeeze(0).numpy()
    z = z_from_raw_float(z_raw)
    png = png_bytes(load_generator(release.GENERATOR).render(z))
    record = FingerprintRecord(
        model_type=model.model_type,
        fingerprinted_layers=list(model.layer_indices),
        encoder_digest=release.network_digest(release.ENCODER),
        generator_digest=release.network_digest(release.GENERATOR),
        z=z,
        z_frac_bits=Z_FRAC_BITS,
    )
    write_folder(Path(out), record, png, terms, model.tokens, force)
    return record.to_json()
