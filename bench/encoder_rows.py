"""Proof rows of the default circuit with each encoder candidate, and of the token sweep (settings only).

    python bench/encoder_rows.py [--candidates encoder/weights/candidates] [--tokens 8 16 32 64]

The default layout (hidden 64, GQA 4/2, FFN 128, last 2 layers). Rows are what
proving time and key size follow (BENCHMARKS.md): at 268k rows the default proof
takes ~130 s on this machine, and each doubling of rows roughly doubles it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import ezkl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noseprint.circuits.build import canonicalise_settings  # noqa: E402
from noseprint.circuits.settings import run_args  # noqa: E402
from noseprint.core.layout import CircuitLayout, LayerShape  # noqa: E402
from noseprint.encoder.network import EncoderConfig, InvariantEncoder, load_encoder  # noqa: E402

from bench.single_circuit import export_onnx  # noqa: E402

LAYER = LayerShape(hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, gated=True)


def rows(encoder, tokens: int, folder: Path) -> int:
    layout = CircuitLayout(tokens=tokens, hidden=64, layers=(LAYER, LAYER), term_shifts=(7, 7, 7, 7, 7, 8))
    onnx, settings = folder / "g.onnx", folder / "s.json"
    export_onnx(layout, encoder, onnx)
    ezkl.gen_settings(str(onnx), str(settings), run_args(17))
    canonicalise_settings(settings)
    return int(json.loads(settings.read_text())["num_rows"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=Path, default=Path("encoder/weights/candidates"))
    parser.add_argument("--tokens", type=int, nargs="*", default=[8, 16, 32, 64])
    parser.add_argument("--sweep-encoder", default="projection")
    parser.add_argument("--z-dims", type=int, nargs="*", default=[32, 128, 256], help="projection widths to cost")
    args = parser.parse_args()
    encoders = {
        "placeholder patch": load_encoder(Path("encoder/weights/encoder.safetensors")),
        "projection": InvariantEncoder(EncoderConfig(kind="projection")),
    }
    encoders |= {f"projection z={d}": InvariantEncoder(EncoderConfig(kind="projection", z_dim=d)) for d in args.z_dims}
    encoders |= {w.stem: load_encoder(w) for w in sorted(args.candidates.glob("*.safetensors"))}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(f"{'encoder':<20} {'rows (n=16)':>12}")
        for name, encoder in encoders.items():
            try:
                print(f"{name:<20} {rows(encoder, 16, Path(tmp)):>12,}", flush=True)
            except BaseException as exc:  # EZKL panics surface as pyo3 PanicException (a BaseException)
                print(f"{name:<20} {'does not compile: ' + str(exc).splitlines()[0]}", flush=True)
        print(f"\n{'n':>4} {'rows (' + args.sweep_encoder + ')':>20}")
        for n in args.tokens:
            print(f"{n:>4} {rows(encoders[args.sweep_encoder], n, Path(tmp)):>20,}", flush=True)


if __name__ == "__main__":
    main()
