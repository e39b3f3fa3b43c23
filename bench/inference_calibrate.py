"""Issue 20: what one challenge-inference proof costs on this machine, measured, and what a model's prompt costs.

    python -m bench.inference_calibrate [--logrows 14] [--tokens 8] [--save P.json]   # about 45 min here
    python -m bench.inference_calibrate --read P.json [P2.json] [--plot F.png]         # the read-out again

This machine's points are in docs/data/inference_calibration*.json; the figure is docs/figures/inference_cost.png.

`bench.inference_rows` counts EZKL rows; this proves. Five layer proofs of random demo-architecture models
(`models.demo_model`): the test fixture's toy (hidden 16) as one FFN part and as a whole layer, and the zoo's
shape (hidden 64, 4 heads, 2 K/V heads, FFN 128) as an attention part (one K/V head and its two query heads)
and an FFN part (64 rows), and all-MiniLM-L6-v2's width (hidden 384) as its smallest part, an FFN block of 8
rows (about 22 GB: run it alone). Each circuit is built as `prove-inference` builds it (`circuits.challenge_circuits.
build_inference` at --logrows), its keys derived in one child process and the part proven in another
(`bench.calibrate`'s children: each times its EZKL call; peak RSS sampled over the process tree). The inputs
are the model's committed integers with blinding and a hidden state at unit RMS, as a prover hands them.

Fitted: seconds and peak GB per row (a + b·rows, least squares), read at the layers people ask about, each cut
as `prove-inference` cuts it (`bench.inference_rows`' exact row fits): the zoo's shape, all-MiniLM-L6-v2's
widths, LLaMA-2-7B and 70B. A read-out beyond the largest measured proof is an extrapolation of this fit at this
logrows (EZKL folds rows into more columns; a larger logrows uses fewer): an order of magnitude, not a plan.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import noseprint.circuits.srs as srs_store
import noseprint.core.paths as paths
import numpy as np
from noseprint.circuits.challenge_circuits import INPUT_SCALE, build_inference, felts, model_values, piece_ints
from noseprint.circuits.commitment import quantise, random_blinding, with_blinding
from noseprint.circuits.keys import ensure_keys
from noseprint.circuits.proving import ProofTask
from noseprint.core.chunks import Chunking
from noseprint.core.whole_model import DEFAULT_PART_WEIGHTS, InferenceShape, PartSizes
from noseprint.models.demo_model import DemoShape, write_demo_model
from noseprint.models.full_model import read_full_model

from bench.calibrate import GB, run_child
from bench.inference_rows import LLAMA_SHAPES, layer_cut

TOY = DemoShape(hidden=16, heads=2, kv_heads=1, ffn=32, layers=2, vocab_words=60)
"""The test fixture's model (tests/make_fixture_inference.py)."""
ZOO = DemoShape()
"""The zoo's bases: hidden 64, 4 heads (2 K/V), FFN 128, 4 layers, 2,000 words."""
MINILM_WIDE = DemoShape(hidden=384, heads=12, kv_heads=12, ffn=1536, layers=2, vocab_words=60)
"""all-MiniLM-L6-v2's widths (hidden 384, 12 heads of 32, FFN 1,536) in the demo architecture."""
ABLATION_LAYERS, HEAD_PASSES = 1, 3
"""Per prompt beyond the model's own chain, with two fingerprinted last layers (`core.whole_model.ablations`):
one more layer and two more head passes (the model's own head is the third)."""
HEAD_COST = 0.65
"""A head pass in layers' cost at 7B (BENCHMARKS.md, "7B and 70B"): the vocabulary's rows against a layer's
weights, where the head's own rows were not counted. An encoder (MiniLM) pools instead: no head.
"""
ZOO_HEAD_BLOCKS, ZOO_HEAD_BLOCK_ROWS = 8, 232_382
"""The zoo shape's head as `circuits.challenge_circuits.probe_rows` counts it at 8 tokens (BENCHMARKS.md)."""
MEMORY_HEADROOM_GB = 20.0
"""What one proof may take on this 24 GiB machine, leaving room for the system."""


@dataclass(frozen=True)
class Case:
    """One proof to measure: a model shape, its chunking, and which part of layer 0."""

    label: str
    model: DemoShape
    chunking: Chunking
    sizes: PartSizes | None
    kind: str


CASES = [
    Case("toy FFN part (16 rows)", TOY, Chunking(kv_heads=1, ffn_rows=16), PartSizes(attention=1, ffn=1), "ffn"),
    Case("toy whole layer", TOY, Chunking(kv_heads=1, ffn_rows=16), None, "layer"),
    Case("zoo attention part (1 K/V head)", ZOO, Chunking(kv_heads=1, ffn_rows=64), PartSizes(1, 1), "attention"),
    Case("zoo FFN part (64 rows)", ZOO, Chunking(kv_heads=1, ffn_rows=64), PartSizes(1, 1), "ffn"),
    Case("MiniLM-wide FFN part (8 rows)", MINILM_WIDE, Chunking(kv_heads=1, ffn_rows=8), PartSizes(1, 1), "ffn"),
]
"""The last case is the smallest part at MiniLM's width (its hidden-wide activations alone are ~520k rows):
about 20 GB, so run it alone (`--cases 4`)."""


def blinding_row(hidden: int) -> np.ndarray:
    """A fresh random row, as the prover puts under every committed hidden state."""
    half = 1 << 15
    return np.asarray([[secrets.randbelow(2 * half) - half for _ in range(hidden)]], dtype=np.int64)


def hidden_state(tokens: int, hidden: int, generator: np.random.Generator) -> np.ndarray:
    """A hidden state at unit RMS for `tokens` positions with its blinding row, as committed integers."""
    return np.vstack([quantise(generator.standard_normal((tokens, hidden)), INPUT_SCALE), blinding_row(hidden)])


def measure_case(case: Case, folder: Path, logrows: int, tokens: int, srs, scratch: Path) -> dict:
    """Keys derived and one proof of `case` made, each in a measured child."""
    model_dir = write_demo_model(folder / case.label.split()[0], case.model, seed=1)
    model = read_full_model(model_dir)
    shape: InferenceShape = model.shape
    circuits = build_inference(shape, case.chunking, {}, tokens, 1, logrows, case.sizes)
    circuit = circuits.layer_circuits[case.kind]
    cache = Path(tempfile.mkdtemp(dir=scratch, prefix="keys-"))
    setup_s, setup_peak = run_child("setup", (circuit, srs, cache), scratch, None)
    keys = ensure_keys(circuit, srs, need_pk=True, cache=cache)
    assert keys.pk is not None and not keys.derived_now
    values = model_values(model, {}, [0])
    part = next(p for p in circuits.parts(0) if p.kind == case.kind)
    generator = np.random.default_rng(0)
    state = hidden_state(tokens, shape.hidden, generator)
    states = [state] if case.kind == "layer" else [state, state]
    pieces = [with_blinding(piece_ints(values, p), p, random_blinding(p.blinding_count)) for p in part.pieces]
    blinding = blinding_row(shape.hidden)
    inputs = [felts(x) for x in [*states, *pieces, blinding]]
    paths_ = (circuit.compiled, circuit.settings, keys.vk, keys.pk, srs.path)
    task = ProofTask(case.label, *(str(p) for p in paths_), inputs)
    prove_s, peak = run_child("prove", task, scratch, None)
    weights = sum(math.prod(p.shape) for p in part.pieces)
    point = {"label": case.label, "rows": circuit.num_rows, "weights": weights, "setup_s": setup_s,
             "prove_s": prove_s, "peak_gb": peak / GB, "setup_peak_gb": setup_peak / GB,
             "pk_gb": keys.pk.stat().st_size / GB}  # fmt: skip
    print(f"{case.label:<34} {point['rows']:>9,} {weights:>8,} {setup_s:>8.0f} {prove_s:>8.0f} "
          f"{point['peak_gb']:>8.1f} {point['pk_gb']:>6.1f}", flush=True)  # fmt: skip
    return point


def fit(points: list[dict], key: str) -> tuple[float, float]:
    """a, b of key = a + b·rows."""
    rows = np.array([p["rows"] for p in points], dtype=np.float64)
    design = np.stack([np.ones_like(rows), rows], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.array([p[key] for p in points]), rcond=None)
    return float(a), float(b)


ZOO_SHAPE = InferenceShape(vocab=2048, hidden=64, layers=4, heads=4, kv_heads=2, head_dim=16, ffn=128,
                           rope_theta=10000.0)  # fmt: skip
MINILM_AS_LLAMA = InferenceShape(vocab=30522, hidden=384, layers=6, heads=12, kv_heads=12, head_dim=32, ffn=1536,
                                 rope_theta=10000.0)  # fmt: skip
"""all-MiniLM-L6-v2's widths in this circuit's architecture (its LayerNorm, GELU and biases are not built)."""


SMALLEST_PART_WEIGHTS = 1 << 14
"""Below this a part is mostly its hidden-wide activations (about 1,360 rows per hidden unit whatever its
weights): cutting finer multiplies proofs without shrinking them."""


def fitting_part_weights(shape: InferenceShape, max_rows: float) -> int:
    """The largest power-of-two part size up to the default whose proofs all stay within `max_rows`; the
    default when none does (then no cut fits this machine, and the read-out says how far it is)."""
    weights = DEFAULT_PART_WEIGHTS
    while weights >= SMALLEST_PART_WEIGHTS:
        if max(rows for *_, rows in layer_cut(shape, weights)) <= max_rows:
            return weights
        weights //= 2
    return DEFAULT_PART_WEIGHTS


def read_out(points: list[dict]) -> None:
    """Seconds and memory per proof and per prompt at real shapes, from the fit."""
    seconds, memory = fit(points, "prove_s"), fit(points, "peak_gb")
    largest = max(p["rows"] for p in points)
    print(f"largest measured proof: {largest:,} rows (read-outs past it extrapolate)")
    print(f"\nfit: prove seconds = {seconds[0]:.1f} + {seconds[1] * 1e3:.3f} ms x rows; "
          f"peak GB = {memory[0]:.2f} + {memory[1] * 1e6:.1f} GB per million rows")  # fmt: skip
    fits_here = (MEMORY_HEADROOM_GB - memory[0]) / memory[1]
    print(f"the largest proof within {MEMORY_HEADROOM_GB:.0f} GB here: about {fits_here:,.0f} rows\n")
    targets = {"zoo base": ZOO_SHAPE, "MiniLM widths": MINILM_AS_LLAMA, "LLaMA-2-7B": LLAMA_SHAPES["LLaMA-2-7B"]}
    head_s = {name: None for name in targets} | {"zoo base": ZOO_HEAD_BLOCKS * (seconds[0] + seconds[1] *
              ZOO_HEAD_BLOCK_ROWS), "MiniLM widths": 0.0}  # fmt: skip
    print(f"{'model':<14} {'part weights':>12} {'proofs/layer':>12} {'rows/layer':>13} {'largest':>11} "
          f"{'peak GB':>8} {'h/layer':>8} {'h/prompt':>9}")  # fmt: skip
    for name, shape in targets.items():
        searched = name != "LLaMA-2-7B"  # 7B: prove-inference's default parts (searching cuts takes minutes)
        part_weights = fitting_part_weights(shape, fits_here) if searched else DEFAULT_PART_WEIGHTS
        cut = layer_cut(shape, part_weights)
        proofs = sum(count for _, count, _, _ in cut)
        rows = sum(count * r for _, count, _, r in cut)
        biggest = max(r for *_, r in cut)
        layer_s = sum(count * (seconds[0] + seconds[1] * r) for _, count, _, r in cut)
        head = head_s[name] if head_s[name] is not None else HEAD_COST * layer_s
        prompt_s = (shape.layers + ABLATION_LAYERS) * layer_s + HEAD_PASSES * head
        part_weights = max(weights for _, _, weights, _ in cut)
        print(f"{name:<14} {part_weights:>12,} {proofs:>12} {rows:>13,.0f} {biggest:>11,.0f} "
              f"{memory[0] + memory[1] * biggest:>8,.0f} {layer_s / 3600:>8.2f} {prompt_s / 3600:>9,.1f}")  # fmt: skip
        if searched and biggest > fits_here:
            smallest = max(r for *_, r in layer_cut(shape, SMALLEST_PART_WEIGHTS))
            print(f"  {name}: no cut fits {MEMORY_HEADROOM_GB:.0f} GB; its smallest parts (--part-weights "
                  f"{SMALLEST_PART_WEIGHTS:,}) are still {smallest:,.0f} rows, "
                  f"{memory[0] + memory[1] * smallest:.1f} GB")  # fmt: skip


MARKED_PROOFS = {
    "zoo base's largest part": 332_761,
    "MiniLM width, attention part (1 head, 4 tokens)": 376_723,
    "MiniLM width, attention part (1 head, 8 tokens)": 704_145,
}
"""Proofs the figure marks (EZKL's counts: `circuits.challenge_circuits.probe_rows`)."""
MACHINE_GB = 24.0


def plot(points: list[dict], path: Path) -> None:
    """Peak memory and proving time against rows, measured and fitted, with this machine's memory and the
    proofs the read-out turns on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    seconds, memory = fit(points, "prove_s"), fit(points, "peak_gb")
    span = np.linspace(0, 800_000, 50)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, (a, b), unit in ((left, "peak_gb", memory, "peak memory (GB)"),
                                    (right, "prove_s", seconds, "proving time (s)")):  # fmt: skip
        axis.plot([p["rows"] for p in points], [p[key] for p in points], "o", color="tab:blue", label="measured")
        axis.plot(span, a + b * span, "-", color="tab:blue", alpha=0.5, label="fit")
        for (label, rows), colour in zip(MARKED_PROOFS.items(), ("tab:green", "tab:orange", "tab:red"), strict=True):
            axis.axvline(rows, color=colour, linestyle=":", label=label)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda rows, _: f"{rows / 1000:.0f}k"))
        axis.set_xlabel("EZKL rows of one proof (logrows 14)")
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
    left.axhline(MACHINE_GB, color="black", linestyle="--", label="this machine (24 GiB)")
    left.legend(fontsize=7, loc="lower right")
    fig.suptitle("One challenge-inference proof on 2 cores: what fits (bench/inference_calibrate.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logrows", type=int, default=14, help="The bundle's logrows (every circuit's).")
    parser.add_argument("--tokens", type=int, default=8, help="Challenge prompt length.")
    parser.add_argument("--cases", type=int, nargs="+", help="Indices into the cases (default: all).")
    parser.add_argument("--save", type=Path, help="Write the measured points here (JSON; never over a file).")
    parser.add_argument("--read", type=Path, nargs="+", help="Read points saved before instead of measuring.")
    parser.add_argument("--plot", type=Path, help="Also draw the points and the fit into this PNG.")
    args = parser.parse_args()
    if args.save and args.save.exists():
        raise SystemExit(f"{args.save} exists: name another file")
    if args.read:
        points = [point for path in args.read for point in json.loads(path.read_text())]
        read_out(points)
        if args.plot:
            plot(points, args.plot)
        return
    picked = [CASES[i] for i in args.cases] if args.cases else CASES
    print(f"{'proof':<34} {'rows':>9} {'weights':>8} {'setup s':>8} {'prove s':>8} {'peak GB':>8} {'pk GB':>6}")
    with tempfile.TemporaryDirectory(prefix="inference-calibrate-") as tmp:
        scratch = Path(tmp)
        srs = srs_store.init_dev(args.logrows, store=paths.home() / "calibration-srs")  # never the trusted store
        points = [measure_case(case, scratch, args.logrows, args.tokens, srs, scratch) for case in picked]
    if args.save:
        args.save.write_text(json.dumps(points, indent=1))
    if len(points) >= 2:
        read_out(points)
        if args.plot:
            plot(points, args.plot)


if __name__ == "__main__":
    sys.exit(main())
