"""Where EZKL's rows go: small graphs that isolate one cost each.

    python bench/row_costs.py

Settings generation only (seconds). Each line compares one graph under two settings, or two graphs,
with everything else equal; BENCHMARKS.md quotes the figures.
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

from noseprint.circuits.settings import run_args_dict  # noqa: E402


class Graph(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *inputs):
        return self.fn(*inputs)


def rows(fn, shapes: list[tuple[int, ...]], folder: Path, **overrides) -> int:
    onnx, settings = folder / "g.onnx", folder / "s.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Graph(fn), tuple(torch.randn(*s) for s in shapes), str(onnx), opset_version=17, dynamo=False)
    args = ezkl.PyRunArgs()
    for key, value in {**run_args_dict(17), **overrides}.items():
        setattr(args, key, value)
    ezkl.gen_settings(str(onnx), str(settings), args)
    return int(json.loads(settings.read_text())["num_rows"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp)
        product = (lambda e, w: e @ w.T, [(16, 32), (32, 32)])
        with_rc = rows(*product, f, ignore_range_check_inputs_outputs=False)
        without = rows(*product, f)
        print(f"16x32 @ (32x32)^T, input/output range checks on: {with_rc:,} rows, off: {without:,} rows")

        one = rows(lambda x: x[:256].sum().reshape(1), [(65536,)], f)
        four = rows(lambda x: (x[:256] + x[256:512] + x[512:768] + x[768:1024]).sum().reshape(1), [(65536,)], f)
        separate = rows(lambda a, b, c, d: (a + b + c + d).sum().reshape(1), [(256,)] * 4, f)
        print(
            f"slices of one 65,536-vector: 1 slice {one:,} rows, 4 slices {four:,} rows; 4 separate inputs {separate:,}"
        )

        big = (lambda e, w: e @ w.T, [(16, 64), (128, 64)])
        rebased = rows(*big, f, scale_rebase_multiplier=1)
        kept = rows(*big, f)
        print(f"16x64 @ (128x64)^T, output rebased: {rebased:,} rows, not rebased: {kept:,} rows")

        gated = (lambda e, g, u: e @ (g * u).T, [(16, 64), (128, 64), (128, 64)])
        print(
            f"E @ (gate*up)^T at 16/64/128, scale_rebase_multiplier 2: {rows(*gated, f, scale_rebase_multiplier=2):,}"
            f" rows, 3: {rows(*gated, f):,} rows"
        )


if __name__ == "__main__":
    main()
