"""Build the fingerprint circuit from public facts only: layout + released encoder -> compiled EZKL circuit.

The prover and the verifier both call `build_circuit`; the circuit id hashes
everything the verification key depends on (the ONNX graph and the run
arguments), so derived keys can be cached by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from circuits.settings import choose_logrows, run_args, run_args_dict
from core import paths
from core.fileio import canonical_json, sha256_bytes, sha256_file
from core.layout import CircuitLayout


@dataclass(frozen=True)
class BuiltCircuit:
    folder: Path
    onnx: Path
    settings: Path
    compiled: Path
    logrows: int
    num_rows: int
    circuit_id: str

    @property
    def output_scales(self) -> list[int]:
        """Fixed-point scale of each public output: z_raw, the term peaks, the owner limbs."""
        return [int(s) for s in json.loads(self.settings.read_text())["model_output_scales"]]

    @property
    def output_scale(self) -> int:
        return self.output_scales[0]


def canonicalise_settings(path: Path) -> None:
    """Rewrite EZKL's settings in one canonical order, so every machine compiles the same circuit.

    EZKL 23 lists `einsum_params.equations` and the required range checks in Rust
    HashMap order, which differs between processes; the order decides how einsum
    columns are configured, hence the fixed columns, hence the verification key.
    Measured: two processes, same ONNX and SRS, different vks. Sorted lists (and a
    zero timestamp) make the compiled circuit, and the vk, reproducible.
    """
    settings = json.loads(path.read_text())
    einsum = settings.get("einsum_params") or {}
    if "equations" in einsum:
        einsum["equations"] = sorted(
            ([eq, dict(sorted(sizes.items()))] for eq, sizes in einsum["equations"]),
            key=lambda item: canonical_json(item),
        )
    for key in ("required_range_checks", "required_lookups"):
        if isinstance(settings.get(key), list):
            settings[key] = sorted(settings[key], key=canonical_json)
    settings["timestamp"] = 0
    path.write_text(json.dumps(settings, indent=1, sort_keys=True))


def circuit_id(onnx_sha256: str, logrows: int) -> str:
    return sha256_bytes(canonical_json({"onnx": onnx_sha256, "run_args": run_args_dict(logrows)}))


def build_circuit(layout: CircuitLayout, encoder_weights: Path, folder: Path) -> BuiltCircuit:
    """Export, generate settings and compile into `folder` (seconds; torch is imported here only)."""
    import ezkl

    from circuits.graph import export_onnx
    from encoder.network import load_encoder

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, settings_path, compiled_path = folder / "circuit.onnx", folder / "settings.json", folder / "circuit.ezkl"
    export_onnx(layout, load_encoder(encoder_weights), onnx_path)
    ezkl.gen_settings(str(onnx_path), str(settings_path), run_args(20))
    num_rows = int(json.loads(settings_path.read_text())["num_rows"])
    logrows = choose_logrows(num_rows)
    ezkl.gen_settings(str(onnx_path), str(settings_path), run_args(logrows))
    canonicalise_settings(settings_path)
    num_rows = int(json.loads(settings_path.read_text())["num_rows"])
    ezkl.compile_circuit(str(onnx_path), str(compiled_path), str(settings_path))
    return BuiltCircuit(
        folder=folder,
        onnx=onnx_path,
        settings=settings_path,
        compiled=compiled_path,
        logrows=logrows,
        num_rows=num_rows,
        circuit_id=circuit_id(sha256_file(onnx_path), logrows),
    )


def _build_key(layout: CircuitLayout, encoder_digest: str) -> str:
    from importlib.metadata import version

    return sha256_bytes(
        canonical_json(
            {
                "layout": layout.to_dict(),
                "encoder": encoder_digest,
                "torch": version("torch").split("+")[0],
                "ezkl": version("ezkl"),
                "builder": BUILDER_VERSION,
            }
        )
    )


CIRCUIT_RECORD = "circuit.json"
BUILDER_VERSION = 4  # 4: the canonical form (norms committed, E centred for LayerNorm, gated FFN)
# 3: the statement circuit (term peaks and owner limbs as public outputs)
"""Bump when the graph or the settings rules change, so cached circuits are rebuilt."""


def circuit_folder(layout: CircuitLayout, encoder_digest: str) -> Path:
    return paths.home() / "circuits" / _build_key(layout, encoder_digest)


def is_built(folder: Path) -> bool:
    return (folder / CIRCUIT_RECORD).is_file()


def cached_circuit(layout: CircuitLayout, encoder_weights: Path, encoder_digest: str) -> BuiltCircuit:
    """`build_circuit` into `NOSEPRINT_HOME/circuits/<key>`, reused when the same layout comes again."""
    folder = circuit_folder(layout, encoder_digest)
    return cached_build(folder, lambda stage: build_circuit(layout, encoder_weights, stage))


def cached_build(folder: Path, build) -> BuiltCircuit:
    """The circuit recorded in `folder`, or `build(stage)` run in a staging folder that then replaces `folder`
    (so an interrupted build never leaves a half-written circuit behind)."""
    import shutil
    import tempfile

    record = folder / CIRCUIT_RECORD
    if record.is_file():
        data = json.loads(record.read_text())
        return BuiltCircuit(
            folder=folder,
            onnx=folder / "circuit.onnx",
            settings=folder / "settings.json",
            compiled=folder / "circuit.ezkl",
            logrows=int(data["logrows"]),
            num_rows=int(data["num_rows"]),
            circuit_id=str(data["circuit_id"]),
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".build-"))
    try:
        built = build(stage)
        record_data = {"logrows": built.logrows, "num_rows": built.num_rows, "circuit_id": built.circuit_id}
        (stage / CIRCUIT_RECORD).write_text(json.dumps(record_data))
        shutil.rmtree(folder, ignore_errors=True)
        stage.replace(folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return cached_build(folder, build)
