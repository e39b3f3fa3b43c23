"""Cost of `prove --prove-image`: the released thumbnail generator as an EZKL circuit.

    python -m bench.image_proof [--thumbnail encoder/weights/thumbnail.safetensors]

Builds the circuit in a scratch NOSEPRINT_HOME with a development SRS, then times
setup (keys), proving (witness + proof) and verification for one z, and reports
rows, logrows, key sizes, peak memory and the proven thumbnail's distance to the
float network. Writes bench/results/image_proof.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import noseprint.encoder.release as release
import numpy as np
import torch

from training import dogs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thumbnail", type=Path, default=release.THUMBNAIL)
    parser.add_argument("--out", type=Path, default=Path("bench/results/image_proof.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="noseprint-bench-image-"))
    os.environ["NOSEPRINT_HOME"] = str(home)

    import noseprint.circuits.srs as srs_store
    from noseprint.circuits.image_circuit import cached_image_circuit, prove_image
    from noseprint.circuits.keys import ensure_keys
    from noseprint.circuits.proving import verify_proof
    from noseprint.encoder.generator import load_generator
    from noseprint.encoder.stylegan import load_float, pixels
    from noseprint.encoder.zvector import Z_FRAC_BITS

    config = load_generator(args.thumbnail).config
    timings: dict[str, float] = {}
    t = time.perf_counter()
    circuit = cached_image_circuit(args.thumbnail, release.network_digest(args.thumbnail))
    timings["build_s"] = time.perf_counter() - t
    print(f"circuit: {circuit.num_rows:,} rows, logrows {circuit.logrows} ({timings['build_s']:.1f} s)", flush=True)
    t = time.perf_counter()
    srs = srs_store.init_dev(circuit.logrows)
    timings["dev_srs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    keys = ensure_keys(circuit, srs, need_pk=True)
    timings["setup_s"] = time.perf_counter() - t
    print(f"setup: {timings['setup_s']:.1f} s", flush=True)

    z = [int(v) for v in np.floor(dogs.standard_z(np.random.default_rng(0), config.z_dim) * (1 << Z_FRAC_BITS))]
    work = Path(tempfile.mkdtemp(dir=home))
    t = time.perf_counter()
    proven = prove_image(circuit, keys, srs, z, config.resolution, work)
    timings["prove_s"] = time.perf_counter() - t
    print(f"prove: {timings['prove_s']:.1f} s", flush=True)
    t = time.perf_counter()
    ok = verify_proof(proven.proof, keys, srs)
    timings["verify_s"] = time.perf_counter() - t
    print(f"verify: {timings['verify_s']:.2f} s ({'valid' if ok else 'INVALID'})", flush=True)

    with torch.no_grad():
        floats = pixels(load_float(args.thumbnail)(torch.tensor([z], dtype=torch.float32) / (1 << Z_FRAC_BITS)))
    gap = np.abs(floats.numpy()[0].astype(int) - proven.pixels.astype(int))
    result = {
        "thumbnail": str(args.thumbnail),
        "resolution": config.resolution,
        "channels": list(config.channels),
        "parameters": int(sum(np.asarray(v).size for v in load_generator(args.thumbnail).w.values())),
        "num_rows": circuit.num_rows,
        "logrows": circuit.logrows,
        **{k: round(v, 2) for k, v in timings.items()},
        "proving_key_gb": round(keys.pk.stat().st_size / 2**30, 2),
        "verification_key_kb": round(keys.vk.stat().st_size / 2**10, 1),
        "proof_kb": round(proven.proof.stat().st_size / 2**10, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "valid": ok,
        "pixel_gap_to_float_max": int(gap.max()),
        "pixel_gap_to_float_mean": round(float(gap.mean()), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
