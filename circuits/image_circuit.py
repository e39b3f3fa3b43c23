"""The picture as a circuit (`prove --prove-image`): z (public) -> 16x16 thumbnail (public), proven with EZKL.

`verify` re-renders the 128x128 fingerprint from the proven z, which needs the
generator and a few hundred milliseconds of CPU. For a verifier that cannot run
it, the prover can add a proof that a thumbnail is the released *thumbnail
generator's* output for that same z: a StyleGAN2-architecture network small
enough to prove (`circuits.budget.RELEASED_THUMBNAIL_ROWS`; BENCHMARKS.md, "Proving
the picture").

Everything here is public and fixed: the graph is the thumbnail's float twin, the
run arguments are constants, so the verifier rebuilds the circuit and derives its
own verification key exactly as for the fingerprint circuit.

* Inputs: z's integers. The input scale is z's own (2^12), so EZKL's quantisation
  of z is exact and the proof's input instances *are* z; `verify` compares them
  with the z it has already checked against the fingerprint proof.
* Outputs: the rgb values at the circuit's output scale s; the thumbnail's pixels
  are floor((v + 2^s)·255 / 2^(s+1)) clamped to 0..255, the renderer's mapping
  done in integers on the public outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import noseprint.core.paths as paths
import numpy as np
from noseprint.circuits.build import BuiltCircuit, cached_build, compile_into
from noseprint.circuits.keys import Keys
from noseprint.circuits.settings import choose_logrows, run_args
from noseprint.circuits.srs import Srs
from noseprint.core.fileio import canonical_json, sha256_bytes
from noseprint.encoder.zvector import Z_FRAC_BITS

IMAGE_BUILDER_VERSION = 1
"""Bump when the graph or the run arguments change, so cached circuits are rebuilt."""
IMAGE_PROBE_LOGROWS = 22
"""The thumbnail's rows are first counted at this size (a generator is about a row per MAC: millions)."""


def image_run_args_dict(logrows: int) -> dict:
    """Fixed run arguments. Input scale = z's scale (exact inputs); parameters at 2^-8 (the thumbnail's
    weights are rounded there inside the circuit, which is then *the* proven function)."""
    return {
        "input_visibility": "public",
        "param_visibility": "fixed",
        "output_visibility": "public",
        "input_scale": Z_FRAC_BITS,
        "param_scale": 8,
        "logrows": logrows,
    }


def build_image_circuit(thumbnail_weights: Path, folder: Path) -> BuiltCircuit:
    """Export the thumbnail's float twin to ONNX, count its rows (`IMAGE_PROBE_LOGROWS`) to choose logrows, then
    the shared recipe (`circuits.build.compile_into`: settings, compile, the one circuit id formula). Seconds."""
    import ezkl
    from noseprint.circuits.generator_graph import export_generator_onnx

    def export(path: Path) -> None:
        export_generator_onnx(thumbnail_weights, path)

    folder.mkdir(parents=True, exist_ok=True)
    probe_onnx, probe_settings = folder / "probe.onnx", folder / "probe-settings.json"
    export(probe_onnx)
    ezkl.gen_settings(str(probe_onnx), str(probe_settings), run_args(image_run_args_dict(IMAGE_PROBE_LOGROWS)))
    logrows = choose_logrows(int(json.loads(probe_settings.read_text())["num_rows"]))
    probe_onnx.unlink()
    probe_settings.unlink()
    return compile_into(export, image_run_args_dict(logrows), folder)


def image_circuit_folder(thumbnail_digest: str) -> Path:
    from importlib.metadata import version

    key = sha256_bytes(
        canonical_json(
            {
                "thumbnail": thumbnail_digest,
                "torch": version("torch").split("+")[0],
                "ezkl": version("ezkl"),
                "builder": IMAGE_BUILDER_VERSION,
            }
        )
    )
    return paths.home() / "circuits" / f"image-{key}"


def cached_image_circuit(thumbnail_weights: Path, thumbnail_digest: str) -> BuiltCircuit:
    """`build_image_circuit` into `NOSEPRINT_HOME/circuits/image-<key>`, reused afterwards."""
    folder = image_circuit_folder(thumbnail_digest)
    return cached_build(folder, lambda stage: build_image_circuit(thumbnail_weights, stage))


@dataclass(frozen=True)
class ImageProof:
    proof: Path
    pixels: np.ndarray
    """(H, W, 3) uint8: the thumbnail the proof's public outputs spell."""


def pixels_from_outputs(outputs: list[int], output_scale: int, resolution: int) -> np.ndarray:
    """The public rgb integers (1, 3, R, R), row-major, -> (R, R, 3) uint8, in exact integer arithmetic."""
    values = np.array(outputs, dtype=object).reshape(3, resolution, resolution)
    one = 1 << output_scale
    mapped = np.vectorize(lambda v: min(255, max(0, ((v + one) * 255) // (2 * one))))(values)
    return mapped.astype(np.uint8).transpose(1, 2, 0).copy()


def split_instances(proof_path: Path, z_dim: int) -> tuple[list[int], list[int]]:
    """(input integers, output integers) as the proof states them: EZKL lists the public inputs, then the outputs."""
    from noseprint.circuits.proving import felt_to_signed

    instances = json.loads(Path(proof_path).read_text())["instances"]
    values = [felt_to_signed(felt) for column in instances for felt in column]
    return values[:z_dim], values[z_dim:]


def output_scale(circuit: BuiltCircuit) -> int:
    return int(json.loads(circuit.settings.read_text())["model_output_scales"][0])


def prove_image(
    circuit: BuiltCircuit, keys: Keys, srs: Srs, z: list[int], resolution: int, workdir: Path
) -> ImageProof:
    """Witness and proof for z (integers at 2^12); returns the proof and the thumbnail it proves."""
    import ezkl

    if keys.pk is None:
        raise ValueError("proving needs the proving key")
    data, witness, proof = workdir / "image-input.json", workdir / "image-witness.json", workdir / "image-proof.json"
    data.write_text(json.dumps({"input_data": [[v / (1 << Z_FRAC_BITS) for v in z]]}))
    ezkl.gen_witness(str(data), str(circuit.compiled), str(witness), str(keys.vk), str(srs.path))
    ezkl.prove(str(witness), str(circuit.compiled), str(keys.pk), str(proof), str(srs.path))
    inputs, outputs = split_instances(proof, len(z))
    if inputs != list(z):
        raise RuntimeError("EZKL quantised z differently from its integers; the image proof would not bind z")
    return ImageProof(proof, pixels_from_outputs(outputs, output_scale(circuit), resolution))
