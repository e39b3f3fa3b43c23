"""Proving and verification keys, derived locally and cached by what they were derived from.

A verification key read from a bundle is never evidence: `verify` derives its own
from the circuit it rebuilt and its own SRS. Deriving means running EZKL's setup
(minutes for the default circuit), so keys are cached under
`NOSEPRINT_HOME/keys/<sha256(circuit id, SRS sha256)>/`. The verifier keeps only
the verification key; the prover keeps the proving key too.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import noseprint.core.paths as paths
from noseprint.circuits.build import BuiltCircuit
from noseprint.circuits.srs import Srs
from noseprint.core.fileio import canonical_json, sha256_bytes, sha256_file


@dataclass(frozen=True)
class Keys:
    vk: Path
    pk: Path | None
    settings: Path
    vk_sha256: str
    derived_now: bool


def key_id(circuit: BuiltCircuit, srs: Srs) -> str:
    return sha256_bytes(canonical_json({"circuit": circuit.circuit_id, "srs": srs.sha256}))


def has_verification_key(circuit: BuiltCircuit, srs: Srs, cache: Path | None = None) -> bool:
    folder = (cache or paths.key_cache()) / key_id(circuit, srs)
    return (folder / "vk.key").is_file() and (folder / "settings.json").is_file()


def ensure_keys(circuit: BuiltCircuit, srs: Srs, need_pk: bool, cache: Path | None = None) -> Keys:
    """Cached keys for (circuit, SRS), running EZKL setup only when the cache lacks them."""
    import ezkl

    folder = (cache or paths.key_cache()) / key_id(circuit, srs)
    vk, pk, settings = folder / "vk.key", folder / "pk.key", folder / "settings.json"
    if vk.is_file() and settings.is_file() and (pk.is_file() or not need_pk):
        return Keys(vk, pk if pk.is_file() else None, settings, sha256_file(vk), derived_now=False)

    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".setup-"))
    try:
        ok = ezkl.setup(str(circuit.compiled), str(stage / "vk.key"), str(stage / "pk.key"), str(srs.path), None, False)
        if not ok:
            raise RuntimeError("EZKL setup failed")
        shutil.copyfile(circuit.settings, stage / "settings.json")
        if not need_pk:
            (stage / "pk.key").unlink()
        shutil.rmtree(folder, ignore_errors=True)
        stage.replace(folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Keys(vk, pk if need_pk else None, settings, sha256_file(vk), derived_now=True)
