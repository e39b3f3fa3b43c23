"""What every circuit build shares: the built circuit's record, EZKL's settings in one canonical order, and a
cache folder filled through a staging folder (`circuits.chunked`, `circuits.image_circuit`,
`circuits.challenge_circuits` build their circuits with these). A circuit id hashes everything the verification
key depends on (the ONNX graph and the run arguments), so derived keys can be cached by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from noseprint.core.fileio import canonical_json


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


CIRCUIT_RECORD = "circuit.json"


def is_built(folder: Path) -> bool:
    return (folder / CIRCUIT_RECORD).is_file()


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
