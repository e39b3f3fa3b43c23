"""The per-token part of the default circuit, stage by stage (settings generation only, seconds).

    python bench/fixed_costs.py

Cumulative rows of the default layout (hidden 64, GQA 4/2, FFN 128, 16 tokens) cut after each stage:
raw terms (their products and rebases), the public shifts, centring, standardisation, the encoder.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import ezkl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noseprint.circuits import graph  # noqa: E402
from noseprint.circuits.settings import run_args  # noqa: E402
from noseprint.core.layout import CircuitLayout, LayerShape  # noqa: E402
from noseprint.encoder import release  # noqa: E402
from noseprint.encoder.network import load_encoder  # noqa: E402


def shifted(module, inputs):
    return [t / float(2**k) for t, k in zip(module.invariant_terms(*inputs), module.layout.term_shifts, strict=True)]


STAGES = {
    "raw terms": lambda m, x: torch.stack(m.invariant_terms(*x)),
    "+ shifts": lambda m, x: torch.stack(shifted(m, x)),
    "+ centring": lambda m, x: torch.stack([t - t.mean(dim=(-2, -1), keepdim=True) for t in shifted(m, x)]),
    "+ standardisation": lambda m, x: torch.stack([graph.standardise(t) for t in shifted(m, x)]),
    "+ encoder (full)": lambda m, x: graph.FingerprintCircuit.forward(m, *x),
}


class Stage(graph.FingerprintCircuit):
    def __init__(self, layout, encoder, cut):
        super().__init__(layout, encoder)
        self.cut = cut

    def forward(self, *inputs):
        return self.cut(self, inputs)


def main() -> None:
    layer = LayerShape(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, gated=True)
    layout = CircuitLayout(tokens=16, hidden=64, layers=(layer, layer), term_shifts=(7, 7, 7, 7, 7, 8))
    encoder = load_encoder(release.ENCODER)
    previous = 0
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx, settings = Path(tmp) / "g.onnx", Path(tmp) / "s.json"
        for name, cut in STAGES.items():
            module = Stage(layout, encoder, cut).eval()
            example = tuple(torch.zeros(p.committed_shape) for p in layout.pieces())
            torch.onnx.export(module, example, str(onnx), opset_version=17, dynamo=False)
            ezkl.gen_settings(str(onnx), str(settings), run_args(17))
            rows = int(json.loads(settings.read_text())["num_rows"])
            print(f"{name:<20} {rows:>9,} rows  (+{rows - previous:,})")
            previous = rows


if __name__ == "__main__":
    main()
