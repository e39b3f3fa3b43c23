"""What every circuit build shares: the built circuit's record, EZKL's settings in one canonical order, and a
cache folder filled through a staging folder (`circuits.chunked`, `circuits.image_circuit`,
`circuits.challenge_circuits` build their circuits with these). A circuit id hashes everything the verification
key depends on (the ONNX graph and the run arguments), so derived keys can be cached by it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import noseprint.core.paths as paths
from noseprint.circuits.settings import run_args
from noseprint.core.errors import NoseprintError
from noseprint.core.fileio import canonical_json, sha256_bytes, sha256_file

BUILDER_VERSION = 1
"""Bump when the chunk or encode graphs or their settings rules change, so cached circuits are rebuilt."""
PROBE_LOGROWS = 20
"""Settings are first generated at this size to count a circuit's rows (the count does not depend on it)."""

Export = Callable[[Path], None]
ArgsFor = Callable[[int], dict]


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


def _versions() -> dict[str, str]:
    return {"torch": version("torch").split("+")[0], "ezkl": version("ezkl"), "builder": str(BUILDER_VERSION)}


def cache_key(description: dict) -> str:
    return sha256_bytes(canonical_json(description | _versions()))


class NotCached(NoseprintError):
    """Raised in cache-only mode where building would be needed."""


def probe(description: dict, export: Export, args_for: ArgsFor, cached_only: bool = False) -> dict:
    """Rows and output scales of a circuit, cached by its description (export and settings: seconds)."""
    import ezkl

    record = paths.home() / "circuits" / f"probe-{cache_key(description)}.json"
    if record.is_file():
        return dict(json.loads(record.read_text()))
    if cached_only:
        raise NotCached
    record.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=record.parent, prefix=".probe-") as tmp:
        onnx, settings = Path(tmp) / "circuit.onnx", Path(tmp) / "settings.json"
        export(onnx)
        ezkl.gen_settings(str(onnx), str(settings), run_args(args_for(PROBE_LOGROWS)))
        data = json.loads(settings.read_text())
    probe = {"num_rows": int(data["num_rows"]), "output_scales": [int(s) for s in data["model_output_scales"]]}
    staged = record.with_suffix(".tmp")
    staged.write_text(json.dumps(probe))
    staged.replace(record)
    return probe


def circuit_id(onnx: Path, args: dict) -> str:
    """What a verification key depends on, hashed: the ONNX graph and the run arguments (the one formula)."""
    return sha256_bytes(canonical_json({"onnx": sha256_file(onnx), "run_args": args}))


def compile_into(export: Export, args: dict, stage: Path) -> BuiltCircuit:
    """The recipe every circuit follows: export the ONNX graph, EZKL's settings at `args` (in canonical order),
    compile; its id by `circuit_id`."""
    import ezkl

    onnx, settings, compiled = stage / "circuit.onnx", stage / "settings.json", stage / "circuit.ezkl"
    export(onnx)
    ezkl.gen_settings(str(onnx), str(settings), run_args(args))
    canonicalise_settings(settings)
    ezkl.compile_circuit(str(onnx), str(compiled), str(settings))
    num_rows = int(json.loads(settings.read_text())["num_rows"])
    return BuiltCircuit(stage, onnx, settings, compiled, args["logrows"], num_rows, circuit_id(onnx, args))


def cached(description: dict, export: Export, args: dict, cached_only: bool = False) -> BuiltCircuit:
    folder = paths.home() / "circuits" / cache_key(description | {"run_args": args})
    if cached_only and not is_built(folder):
        raise NotCached
    return cached_build(folder, lambda stage: compile_into(export, args, stage))
