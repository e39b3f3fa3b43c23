"""The single fingerprint circuit of the first releases, kept for the benchmarks that measure it (rows per weight,
encoder candidates, fixed-point accuracy): every committed tensor and the owner's key limbs in, (z_raw, term
peaks, owner limbs) out, in one circuit. `prove` and `verify` build the chunked circuits instead
(`circuits.chunked`: the chunk circuits and the encode circuit); the graph is the same `FingerprintCircuit`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from noseprint.circuits.build import BuiltCircuit, canonicalise_settings
from noseprint.circuits.commitment import as_circuit_floats
from noseprint.circuits.graph import OUTPUT_NAMES, FingerprintCircuit, term_peak
from noseprint.circuits.settings import INPUT_SCALE, choose_logrows, run_args, run_args_dict
from noseprint.core.fileio import canonical_json, sha256_bytes, sha256_file
from noseprint.core.layout import CircuitLayout
from noseprint.core.statement import OWNER_LIMBS, owner_limbs
from torch import nn

OWNER_NAME = "owner"


class StatementCircuit(nn.Module):
    """What the single circuit proves: committed tensors and the owner's key limbs -> (z_raw, term peaks, owner
    limbs). The terms are computed once and feed both z_raw and the peaks; the owner limbs pass through to the
    public outputs, so the proof holds only for the key they spell (`core.statement`)."""

    def __init__(self, layout: CircuitLayout, encoder: nn.Module):
        super().__init__()
        self.fingerprint = FingerprintCircuit(layout, encoder)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        *committed, owner = inputs
        shifted = self.fingerprint.shifted_terms(*committed)
        peaks = torch.cat([term_peak(t) for t in shifted])
        return self.fingerprint.encode(shifted), peaks, owner * 1.0


def export_onnx(layout: CircuitLayout, encoder: nn.Module, path: Path) -> None:
    """Export with fixed input shapes and a fixed opset, so every machine gets the same graph."""
    module = StatementCircuit(layout, encoder).eval()
    pieces = layout.pieces()
    examples = (*(torch.zeros(piece.committed_shape) for piece in pieces), torch.zeros(OWNER_LIMBS))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: stable, fixed-shape graphs
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the encoder's constant matrices are meant so
        torch.onnx.export(
            module,
            examples,
            str(path),
            input_names=[piece.name for piece in pieces] + [OWNER_NAME],
            output_names=OUTPUT_NAMES,
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )


def statement_inputs(committed: list[np.ndarray], owner: str | None) -> list[list[float]]:
    """Everything the single circuit takes: the committed tensors, then the owner's key limbs."""
    limbs = [float(limb) for limb in owner_limbs(owner)]
    return [as_circuit_floats(c, INPUT_SCALE) for c in committed] + [limbs]


def build_circuit(layout: CircuitLayout, encoder_weights: Path, folder: Path) -> BuiltCircuit:
    """Export, generate settings and compile into `folder` (seconds)."""
    import ezkl
    from noseprint.encoder.network import load_encoder

    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, settings_path, compiled_path = folder / "circuit.onnx", folder / "settings.json", folder / "circuit.ezkl"
    export_onnx(layout, load_encoder(encoder_weights), onnx_path)
    ezkl.gen_settings(str(onnx_path), str(settings_path), run_args(20))
    logrows = choose_logrows(int(json.loads(settings_path.read_text())["num_rows"]))
    ezkl.gen_settings(str(onnx_path), str(settings_path), run_args(logrows))
    canonicalise_settings(settings_path)
    num_rows = int(json.loads(settings_path.read_text())["num_rows"])
    ezkl.compile_circuit(str(onnx_path), str(compiled_path), str(settings_path))
    circuit_id = sha256_bytes(canonical_json({"onnx": sha256_file(onnx_path), "run_args": run_args_dict(logrows)}))
    return BuiltCircuit(folder, onnx_path, settings_path, compiled_path, logrows, num_rows, circuit_id)
