"""`noseprint check-opening`: does this bundle's commitment open to this model?

For open-weight models the owner can publish the opening (the blinding lines). The
check recomputes the committed tensors from the model's own weights exactly as the
prover does (same tokens, unit-RMS quantisation, the opening's blinding lines) and
asks EZKL for their KZG commitments under the verifier's derived key and SRS. Equal
commitments mean the proven fingerprint is this model's; the bundle itself should be
verified with `noseprint verify` first.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from circuits import srs as srs_store
from circuits.build import cached_circuit
from circuits.keys import ensure_keys
from circuits.layout import CircuitLayout
from circuits.settings import INPUT_SCALE
from encoder import release
from noseprint.errors import UsageError
from noseprint.fileio import read_json
from prover.commitment import as_circuit_floats
from prover.pipeline import committed_inputs, read_model


@dataclass
class OpeningResult:
    matches: bool
    mismatched: list[str]


def check_opening(bundle: Path, model_dir: Path, opening_path: Path, srs_file: Path | None = None) -> OpeningResult:
    import ezkl

    manifest = read_json(Path(bundle) / "manifest.json", "bundle manifest")
    opening = read_json(opening_path, "opening file")
    try:
        layout = CircuitLayout.from_dict(manifest["circuit"]["layout"])
        blinding: dict[str, list[int]] = opening["blinding"]
        token_ids: list[int] = [int(i) for i in opening["token_ids"]]
        published = {t["name"]: t["points"] for t in manifest["commitment"]["tensors"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"bundle or opening is malformed: {exc}") from None
    if opening.get("input_scale") != INPUT_SCALE:
        raise UsageError("the opening was made with another input scale")

    with tempfile.TemporaryDirectory(prefix="noseprint-open-") as tmp:
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(token_ids))
        model = read_model(model_dir, len(token_ids), tokens_file, allow_pickle=False)
        committed, _ = committed_inputs(model, layout, blinding)
        inputs = [as_circuit_floats(c, INPUT_SCALE) for c in committed]

        circuit = cached_circuit(layout, release.ENCODER, release.RELEASED_ENCODER_DIGEST)
        srs = srs_store.from_file(srs_file, circuit.logrows) if srs_file else srs_store.require(circuit.logrows)
        keys = ensure_keys(circuit, srs, need_pk=False)
        data = Path(tmp) / "input.json"
        data.write_text(json.dumps({"input_data": inputs}))
        ezkl.gen_witness(str(data), str(circuit.compiled), str(Path(tmp) / "w.json"), str(keys.vk), str(srs.path))
        computed = json.loads((Path(tmp) / "w.json").read_text())["processed_inputs"]["polycommit"]
    mismatched = [
        p.name for p, points in zip(layout.pieces(), computed, strict=True) if published.get(p.name) != points
    ]
    return OpeningResult(not mismatched, mismatched)
