"""Issue 20: what one layer of challenge inference costs in EZKL rows, measured at growing widths.

    python -m bench.inference_rows [--hidden 16 32 64 128] [--ffn-ratios 2 4] [--tokens 8] [--parts]

Each shape's LLaMA layer circuit (RMSNorm, RoPE, GQA softmax, SwiGLU: `circuits.challenge_graph.LayerCircuit`)
is exported and counted by EZKL (`circuits.challenge_circuits.probe_rows`: no keys, no proof; cached), head_dim 8, one
K/V head per two query heads, the whole layer as one chunk. The rows are fitted as a + b·weights + c·hidden +
d·ffn (weights enter as committed inputs, one cell each; activations per token grow with the widths), and the
fit is read at MiniLM's, 7B's and 70B's layers: how many rows, so what logrows, one layer of one prompt would
need proven whole (EZKL stops at logrows 26). MiniLM's LayerNorm and GELU are not this circuit's RMSNorm and
SiLU; the matrices and widths are what the fit reads.

`--parts` does the same for a layer proven in parts (`core.whole_model.layer_parts`): attention parts of 1-4 K/V
heads (with their query heads) and FFN parts of 8-64 rows, at hidden 16-64, fitted as a + weights + c·hidden +
d·width (q's rows, or the FFN rows), and read at 7B's and 70B's layers cut as `prove-inference` cuts them by
default (the bundle's default chunking, parts of at most DEFAULT_PART_WEIGHTS): how many proofs, how many rows
each. A part pays its norm and its hidden-wide activations again: the parts' rows against the layer's whole.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from noseprint.circuits.challenge_circuits import probe_rows
from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS, Chunking, choose_chunking
from noseprint.core.layout import CircuitLayout
from noseprint.core.whole_model import (
    DEFAULT_PART_WEIGHTS,
    InferenceShape,
    PartSizes,
    choose_part_sizes,
    layer_pieces,
    whole_layer,
)

HEAD_DIM = 8
MAX_LOGROWS = 26
TARGETS = {
    "all-MiniLM-L6-v2": (4 * 384**2 + 2 * 384 * 1536, 384, 1536),
    "LLaMA-2-7B": (4 * 4096**2 + 3 * 4096 * 11008, 4096, 11008),
    "LLaMA-2-70B": (2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672, 8192, 28672),
}
"""(weights, hidden, ffn) of one layer of each model people ask about, from its own architecture's matrices
(MiniLM: q, k, v, o and a two-matrix FFN; LLaMA: SwiGLU's three; 70B: 8 K/V heads)."""
LLAMA_SHAPES = {
    "LLaMA-2-7B": InferenceShape(vocab=32000, hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128,
                                 ffn=11008, rope_theta=10000),
    "LLaMA-2-70B": InferenceShape(vocab=32000, hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                                  ffn=28672, rope_theta=10000),
}  # fmt: skip


def layer_weights(hidden: int, ffn: int) -> int:
    """The probed layer's: q and o (hidden²), k and v (hidden²/2 each: one K/V head per two), gate, up, down."""
    return 2 * hidden * hidden + hidden * hidden + 3 * hidden * ffn


def shape_of(hidden: int, ffn: int) -> InferenceShape:
    heads = hidden // HEAD_DIM
    return InferenceShape(vocab=64, hidden=hidden, layers=1, heads=heads, kv_heads=max(1, heads // 2),
                          head_dim=HEAD_DIM, ffn=ffn, rope_theta=10000.0)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--ffn-ratios", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--parts", action="store_true", help="Also fit layer parts and cut 7B and 70B layers.")
    args = parser.parse_args()
    print(f"{'hidden':>6} {'ffn':>5} {'weights':>9} {'layer rows':>11} {'rows/weight':>12} {'seconds':>8}")
    measured = []
    for ratio in args.ffn_ratios:
        for hidden in args.hidden:
            shape = shape_of(hidden, ratio * hidden)
            started = time.perf_counter()
            rows = probe_rows(shape, Chunking(kv_heads=shape.kv_heads, ffn_rows=shape.ffn), args.tokens)["layer"]
            weights = layer_weights(hidden, shape.ffn)
            measured.append((weights, hidden, shape.ffn, rows))
            print(f"{hidden:>6} {shape.ffn:>5} {weights:>9,} {rows:>11,} {rows / weights:>12.1f} "
                  f"{time.perf_counter() - started:>8.0f}")  # fmt: skip
    design = np.array([[1.0, w, h, f] for w, h, f, _ in measured])
    observed = np.array([r for *_, r in measured], dtype=np.float64)
    (a, b, c, d), *_ = np.linalg.lstsq(design, observed, rcond=None)
    worst = float(np.max(np.abs(design @ np.array([a, b, c, d]) - observed) / observed))
    print(f"\nfit ({args.tokens} tokens): rows = {a:,.0f} + {b:.3f} x weights + {c:,.1f} x hidden + {d:,.1f} x ffn"
          f"   (worst misfit {worst:.1e} of a measured count)")  # fmt: skip
    for name, (weights, hidden, ffn) in TARGETS.items():
        rows = a + b * weights + c * hidden + d * ffn
        proofs = math.ceil(rows / 2**MAX_LOGROWS)
        print(f"{name}: {weights:,} weights per layer -> about {rows:,.0f} rows, logrows "
              f"{math.ceil(math.log2(rows))}; at EZKL's largest circuit (2^{MAX_LOGROWS} rows) {proofs} proof(s) "
              f"per layer and prompt")  # fmt: skip
    if args.parts:
        measure_parts(args.tokens)


def _fit(measured: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, float]:
    """rows = a + b·weights + c·hidden + d·width, and the worst relative misfit."""
    design = np.array([[1.0, w, h, x] for w, h, x, _ in measured])
    observed = np.array([r for *_, r in measured], dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(design, observed, rcond=None)
    return coefficients, float(np.max(np.abs(design @ coefficients - observed) / observed))


def measure_parts(tokens: int) -> None:
    print(f"\n{'kind':>9} {'hidden':>6} {'width':>5} {'weights':>8} {'rows':>9}")
    measured: dict[str, list[tuple[int, int, int, int]]] = {"attention": [], "ffn": []}
    for hidden in (16, 32, 64):
        shape = shape_of(hidden, 4 * hidden)
        for kv, rows in ((1, 8), (2, 32), (4, 64)):
            if kv > shape.kv_heads:
                continue
            counted = probe_rows(shape, Chunking(kv_heads=kv, ffn_rows=rows), tokens, PartSizes(1, 1))
            group = shape.heads // shape.kv_heads
            for kind, width in (("attention", kv * group * HEAD_DIM), ("ffn", rows)):
                weights = 3 * width * hidden  # q, o and k, v at half width (two query heads a K/V head); gate, up, down
                measured[kind].append((weights, hidden, width, counted[kind]))
                print(f"{kind:>9} {hidden:>6} {width:>5} {weights:>8,} {counted[kind]:>9,}")
    fits = {kind: _fit(points) for kind, points in measured.items()}
    for kind, ((a, b, c, d), worst) in fits.items():
        print(f"{kind} part: rows = {a:,.0f} + {b:.3f} x weights + {c:,.1f} x hidden + {d:,.1f} x width "
              f"(worst misfit {worst:.1e})")  # fmt: skip
    coefficients = {kind: tuple(float(c) for c in fitted) for kind, (fitted, _) in fits.items()}
    for name, shape in LLAMA_SHAPES.items():
        cut = layer_cut(shape, DEFAULT_PART_WEIGHTS, coefficients)
        for kind, count, weights, rows in cut:
            print(f"{name}: {count} {kind} parts of {weights:,} weights, about {rows:,.0f} rows each "
                  f"(logrows {math.ceil(math.log2(rows))})")  # fmt: skip
        print(
            f"{name}: {sum(c for _, c, _, _ in cut)} proofs per layer and prompt, "
            f"{sum(c * r for _, c, _, r in cut):,.0f} rows in all"
        )


PART_FITS = {"attention": (3_769.0, 1.0, 1_360.5, 3_588.0), "ffn": (2_320.0, 1.0, 1_359.5, 1_988.0)}
"""rows = a + b·weights + c·hidden + d·width of a layer part at 8 tokens, as `--parts` measured them (exact
fits, BENCHMARKS.md "A layer in parts"; width: q's, or the FFN rows)."""
LAYER_FIT = (6_024.0, 1.0, 6_280.5, 1_988.0)
"""The same for a whole layer (width: the FFN's), as this bench measures it without `--parts`."""


def layer_cut(
    shape: InferenceShape, part_weights: int, fits: dict[str, tuple[float, ...]] = PART_FITS
) -> list[tuple[str, int, int, float]]:
    """One layer of `shape` cut as `prove-inference` cuts it (the default chunking, parts of at most
    `part_weights`): per part kind, how many parts, the weights and the rows of each."""
    layout = CircuitLayout(tokens=1, hidden=shape.hidden, layers=(shape.layer_shape(),))
    chunking = choose_chunking(layout, min(DEFAULT_CHUNK_WEIGHTS, part_weights))
    layer = layer_pieces(shape, chunking, {})[0]
    sizes = choose_part_sizes(layer, part_weights)
    if sizes == whole_layer(layer):  # prove-inference proves such a layer whole, in one proof
        a, b, c, d = LAYER_FIT
        weights = sum(math.prod(p.shape) for kind in ("attention", "ffn") for p in _part_pieces(layer, kind, sizes))
        return [("layer", 1, weights, a + b * weights + c * shape.hidden + d * shape.ffn)]
    widths = {"attention": layer.q[0].shape[0] * sizes.attention, "ffn": chunking.ffn_rows * sizes.ffn}
    counts = {"attention": len(layer.q) // sizes.attention, "ffn": len(layer.gate) // sizes.ffn}
    cut = []
    for kind in ("attention", "ffn"):
        a, b, c, d = fits[kind]
        weights = sum(math.prod(p.shape) for p in _part_pieces(layer, kind, sizes))
        cut.append((kind, counts[kind], weights, a + b * weights + c * shape.hidden + d * widths[kind]))
    return cut


def _part_pieces(layer, kind: str, sizes: PartSizes) -> list:
    """The weight blocks of the first part of `kind` (norm and scales left out)."""
    if kind == "attention":
        return [*layer.q[: sizes.attention], *layer.k[: sizes.attention], *layer.v[: sizes.attention],
                *layer.o[: sizes.attention]]  # fmt: skip
    return [*layer.gate[: sizes.ffn], *layer.up[: sizes.ffn], *layer.down[: sizes.ffn]]


if __name__ == "__main__":
    main()
