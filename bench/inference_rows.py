"""Issue 20: what one layer of challenge inference costs in EZKL rows, measured at growing widths.

    python -m bench.inference_rows [--hidden 16 32 64 128] [--ffn-ratios 2 4] [--tokens 8]

Each shape's LLaMA layer circuit (RMSNorm, RoPE, GQA softmax, SwiGLU: `circuits.inference_graph.LayerCircuit`)
is exported and counted by EZKL (`circuits.inference.probe_rows`: no keys, no proof; cached), head_dim 8, one
K/V head per two query heads, the whole layer as one chunk. The rows are fitted as a + b·weights + c·hidden +
d·ffn (weights enter as committed inputs, one cell each; activations per token grow with the widths), and the
fit is read at MiniLM's, 7B's and 70B's layers: how many rows, so what logrows, one layer of one prompt would
need proven whole (EZKL stops at logrows 26). MiniLM's LayerNorm and GELU are not this circuit's RMSNorm and
SiLU; the matrices and widths are what the fit reads.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from circuits.inference import probe_rows
from core.chunks import Chunking
from core.inference import InferenceShape

HEAD_DIM = 8
MAX_LOGROWS = 26
TARGETS = {
    "all-MiniLM-L6-v2": (4 * 384**2 + 2 * 384 * 1536, 384, 1536),
    "LLaMA-2-7B": (4 * 4096**2 + 3 * 4096 * 11008, 4096, 11008),
    "LLaMA-2-70B": (2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672, 8192, 28672),
}
"""(weights, hidden, ffn) of one layer of each model people ask about, from its own architecture's matrices
(MiniLM: q, k, v, o and a two-matrix FFN; LLaMA: SwiGLU's three; 70B: 8 K/V heads)."""


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


if __name__ == "__main__":
    main()
