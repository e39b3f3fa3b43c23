"""Rows of the fingerprint circuit under EZKL's default settings and under noseprint's, side by side.

    python bench/circuit_rows.py

Only EZKL's settings generation runs (seconds): rows are what proving time and key size follow
(see BENCHMARKS.md for the timed runs). Prints one row per (shape, configuration).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ezkl  # noqa: E402
import torch  # noqa: E402
from noseprint.circuits.build import canonicalise_settings  # noqa: E402
from noseprint.circuits.graph import FingerprintCircuit  # noqa: E402
from noseprint.circuits.settings import run_args_dict  # noqa: E402
from noseprint.core.layout import CircuitLayout, LayerShape  # noqa: E402
from noseprint.encoder import release  # noqa: E402
from noseprint.encoder.network import load_encoder  # noqa: E402

from bench.single_circuit import export_onnx  # noqa: E402

SHAPES = [  # tokens, hidden, heads, kv_heads, ffn
    (8, 16, 2, 1, 32),
    (16, 64, 4, 2, 128),
    (16, 128, 4, 2, 256),
    (16, 256, 8, 2, 512),
]
CONFIGS = {
    "ezkl defaults": {"scale_rebase_multiplier": 1, "decomp_legs": 2, "ignore_range_check_inputs_outputs": False},
    "defaults, no i/o range checks": {"scale_rebase_multiplier": 1, "decomp_legs": 2},
    "noseprint": {},
}


class SlicedVector(torch.nn.Module):
    """The first design: every tensor sliced out of one committed vector (EZKL pays per slice, per element)."""

    def __init__(self, layout: CircuitLayout, encoder):
        super().__init__()
        self.circuit = FingerprintCircuit(layout, encoder)
        self.shapes = [p.committed_shape for p in layout.pieces()]

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        pieces, cursor = [], 0
        for rows_, cols in self.shapes:
            pieces.append(flat[cursor : cursor + rows_ * cols].reshape(rows_, cols))
            cursor += rows_ * cols
        return self.circuit(*pieces)


def export_sliced(layout: CircuitLayout, encoder, path: Path) -> None:
    total = sum(r * c for r, c in (p.committed_shape for p in layout.pieces()))
    torch.onnx.export(
        SlicedVector(layout, encoder).eval(), (torch.zeros(total),), str(path), opset_version=17, dynamo=False
    )


def rows(onnx: Path, overrides: dict, folder: Path) -> int:
    args = ezkl.PyRunArgs()
    for key, value in {**run_args_dict(17), **overrides}.items():
        setattr(args, key, value)
    settings = folder / "settings.json"
    ezkl.gen_settings(str(onnx), str(settings), args)
    canonicalise_settings(settings)
    return int(json.loads(settings.read_text())["num_rows"])


def main() -> None:
    encoder = load_encoder(release.ENCODER)
    print(f"{'tokens':>6} {'hidden':>6} {'weights':>9} {'configuration':<30} {'rows':>10} {'rows/weight':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for tokens, hidden, heads, kv, ffn in SHAPES:
            layer = LayerShape(hidden, heads, kv, hidden // heads, ffn, gated=True)
            layout = CircuitLayout(tokens=tokens, hidden=hidden, layers=(layer, layer), term_shifts=(8,) * 6)
            export_onnx(layout, encoder, folder / "c.onnx")
            export_sliced(layout, encoder, folder / "sliced.onnx")
            variants = [(name, "c.onnx", overrides) for name, overrides in CONFIGS.items()]
            if layout.weight_count < 100_000:
                variants.append(("noseprint, one sliced vector", "sliced.onnx", {}))
            for name, onnx, overrides in variants:
                n = rows(folder / onnx, overrides, folder)
                per_weight = n / layout.weight_count
                print(f"{tokens:>6} {hidden:>6} {layout.weight_count:>9,} {name:<30} {n:>10,} {per_weight:>11.2f}")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
