"""Chunk proofs measured on this machine: the curve of issue 19 and the table `noseprint plan` costs proofs with.

    python -m bench.calibrate                                      # hidden 384 (all-MiniLM-L6-v2's width)
    python -m bench.calibrate --hidden 64 --chunk-weights 16384 65536 --write
    python -m bench.calibrate --from-checkpoint DIR --chunks 3     # real chunks of a checkpoint, measured vs plan
    python -m bench.calibrate --llama-7b-width --kinds ffn --chunks 3   # chunks at hidden 4096, measured vs plan

For each `--chunk-weights` value: a random LLaMA-architecture model of width `--hidden` (`models.demo_model`,
two layers, 16 tokens), its chunk plan, the chunk circuit of its largest shape compiled at the logrows
`build_chunked` chooses, its keys derived in one child process (into a fresh key cache, so setup is always
measured) and one chunk proven in another; each child's peak RSS is sampled over its process tree
(`bench.measure`) and each times its own EZKL call. Prints chunk size against weights proven per second,
proving key size and peak memory. `--write` replaces circuits/calibration.json (atomically) with the points
measured, the machine and this command; `--out FILE` writes another table (`noseprint plan --calibration`).

`--from-checkpoint DIR --chunks N` proves N chunks of a real checkpoint (round robin over its chunk shapes;
`bench/big_checkpoint.py` writes a 7B-shaped one) and prints each beside `noseprint plan`'s prediction;
`--llama-7b-width` writes that checkpoint itself (two layers are enough: a chunk's shape depends on the width,
not the depth) and `--kinds` keeps only some shapes (an attention chunk at hidden 4096 is a whole K/V head,
about 1M weights: mind the memory).
`--cores N` gives each child N threads (RAYON_NUM_THREADS) and records N; otherwise every core of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import run_measured  # noqa: E402

DEFAULT_HIDDEN = 384
DEFAULT_SIZES = [16_384, 65_536, 262_144, 1_048_576]
TOKENS = 16
HEAD_DIM = 32
"""all-MiniLM-L6-v2's: its 384 wide layers have 12 heads of 32."""
GB = 2**30
LLAMA_7B_HIDDEN, LLAMA_7B_FFN, LLAMA_7B_HEADS = 4096, 11008, 32
WIDTH_CHECK_LAYERS = 2
"""The fingerprint reads the last two layers."""
WIDTH_CHECK_VOCAB = 31_997
"""Words for the tokenizer, as bench/big_checkpoint.py (its vocabulary is LLaMA-2's 32,000 with specials)."""


@dataclass
class Prepared:
    """A checkpoint read and planned as `noseprint prove` plans it, short of compiling every circuit."""

    layout: Any
    chunking: Any
    chunks: list
    shapes: list
    rows: dict
    logrows: int
    quantised: dict


def prepare(model_dir: Path, chunk_weights: int, tokens: int) -> Prepared:
    from noseprint.circuits.chunked import probe_rows
    from noseprint.circuits.commitment import quantised_tensors
    from noseprint.circuits.settings import choose_logrows
    from noseprint.core.chunks import choose_chunking, distinct_shapes, plan_chunks
    from noseprint.models.weights import read_model

    model = read_model(model_dir, tokens, None, False)
    quantised = quantised_tensors(model.tensors(), model.layout)
    chunking = choose_chunking(model.layout, chunk_weights)
    chunks = plan_chunks(model.layout, chunking)
    shapes = distinct_shapes(chunks)
    rows = {shape: probe_rows(shape) for shape in shapes}
    logrows = max(choose_logrows(r) for r in rows.values())
    return Prepared(model.layout, chunking, chunks, shapes, rows, logrows, quantised)


def chunk_circuit(shape: Any, logrows: int) -> Any:
    """The chunk circuit exactly as `build_chunked` compiles it (the same cache entry), without the encode
    circuit, which a calibration does not prove (and which, for a 7B plan, is the largest circuit to compile)."""
    from noseprint.circuits.chunked import _cached, _chunk_export
    from noseprint.circuits.settings import chunk_run_args_dict

    return _cached({"chunk": shape.to_dict()}, _chunk_export(shape), chunk_run_args_dict(logrows))


def proof_task(chunk: Any, quantised: dict, circuit: Any, keys: Any, srs: Any) -> Any:
    from noseprint.circuits.commitment import chunk_inputs, commit_pieces, output_blinding
    from noseprint.circuits.proving import ProofTask

    committed, _ = commit_pieces(quantised, list(chunk.pieces))
    inputs = chunk_inputs(chunk, committed, output_blinding(chunk))
    paths = (circuit.compiled, circuit.settings, keys.vk, keys.pk, srs.path)
    return ProofTask(chunk.name, *(str(p) for p in paths), inputs)


def run_child(phase: str, payload: Any, scratch: Path, cores: int | None) -> tuple[float, int]:
    """Run one phase in a child process; its own seconds for the EZKL call and its peak RSS in bytes."""
    job = scratch / f"{phase}.pickle"
    job.write_bytes(pickle.dumps(payload))
    env = dict(os.environ) | ({"RAYON_NUM_THREADS": str(cores)} if cores else {})
    command = [sys.executable, str(Path(__file__).resolve()), "--one", phase, str(job)]
    result, _, peak_gb = run_measured(command, env)
    job.unlink()
    if result.returncode:
        raise SystemExit(f"the {phase} child failed:\n{result.stderr[-4000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["seconds"]), int(peak_gb * GB)


def child(phase: str, job: Path) -> None:
    """The measured process: imports EZKL and the project's thin wrappers only (no torch), like a pool worker."""
    from noseprint.circuits.keys import ensure_keys
    from noseprint.circuits.proving import prove_task

    payload = pickle.loads(job.read_bytes())
    started = time.perf_counter()
    if phase == "setup":
        circuit, srs, cache = payload
        ensure_keys(circuit, srs, need_pk=True, cache=cache)
    else:
        prove_task(payload)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def measure(prep: Prepared, picks: list, cores: int | None, scratch: Path, chunk_weights: int) -> list[dict]:
    """Keys once per shape among `picks` (measured), then every picked chunk proven (measured): one point each."""
    import noseprint.circuits.srs as srs_store
    import noseprint.core.paths as paths
    from noseprint.circuits.keys import ensure_keys
    from noseprint.prover.estimate import shape_weights

    srs = srs_store.init_dev(prep.logrows, store=paths.home() / "calibration-srs")  # never the trusted store
    points = []
    for shape in dict.fromkeys(chunk.shape for chunk in picks):
        circuit = chunk_circuit(shape, prep.logrows)
        cache = Path(tempfile.mkdtemp(dir=scratch, prefix="keys-"))
        setup_s, setup_peak = run_child("setup", (circuit, srs, cache), scratch, cores)
        keys = ensure_keys(circuit, srs, need_pk=True, cache=cache)
        assert keys.pk is not None and not keys.derived_now
        for chunk in (c for c in picks if c.shape == shape):
            prove_s, peak = run_child("prove", proof_task(chunk, prep.quantised, circuit, keys, srs), scratch, cores)
            points.append(
                {
                    "hidden": prep.layout.hidden, "rows": circuit.num_rows, "logrows": circuit.logrows,
                    "setup_s": round(setup_s, 2), "prove_s": round(prove_s, 2), "pk_bytes": keys.pk.stat().st_size,
                    "peak_rss_bytes": peak, "cores": cores or len(os.sched_getaffinity(0)),
                    "chunk_weights": chunk_weights, "weights": shape_weights(shape), "kind": shape.kind,
                    "setup_peak_rss_bytes": setup_peak, "chunk": chunk.name,
                }
            )  # fmt: skip
            print(f"  measured {chunk.name}: setup {setup_s:.1f} s, prove {prove_s:.1f} s", file=sys.stderr)
    return points


def demo_model(folder: Path, hidden: int, heads: int | None, kv_heads: int | None, ffn: int | None) -> Path:
    from noseprint.models.demo_model import DemoShape, write_demo_model

    heads = heads or max(1, hidden // HEAD_DIM)
    shape = DemoShape(hidden=hidden, heads=heads, kv_heads=kv_heads or heads, ffn=ffn or 4 * hidden, layers=2)
    print(f"model: LLaMA, hidden {hidden}, {heads} heads ({shape.kv_heads} K/V), FFN {shape.ffn}", file=sys.stderr)
    return write_demo_model(folder, shape)


def sweep(args: argparse.Namespace, scratch: Path) -> list[dict]:
    """One chunk of the largest shape per chunk size, on a random model of width --hidden."""
    model = demo_model(scratch / "model", args.hidden, args.heads, args.kv_heads, args.ffn)
    points: list[dict] = []
    measured: dict[tuple, dict] = {}
    for size in args.chunk_weights or DEFAULT_SIZES:
        prep = prepare(model, size, args.tokens)
        shape = max(prep.shapes, key=lambda s: prep.rows[s])
        key = (shape, prep.logrows)
        if key in measured:  # a larger size that changes no chunk: the same circuit, measured already
            print(f"  --chunk-weights {size}: the same chunks as {measured[key]['chunk_weights']}", file=sys.stderr)
            continue
        chunk = next(c for c in prep.chunks if c.shape == shape)
        measured[key] = measure(prep, [chunk], args.cores, scratch, size)[0]
        points.append(measured[key])
    return points


def print_curve(points: list[dict]) -> None:
    head = "chunk weights,kind,weights,rows,logrows,setup s,prove s,weights/s,pk GB,peak GB".split(",")
    lines = [head]
    for p in points:
        lines.append(
            [
                f"{p['chunk_weights']:,}", p["kind"], f"{p['weights']:,}", f"{p['rows']:,}", str(p["logrows"]),
                f"{p['setup_s']:.1f}", f"{p['prove_s']:.1f}", f"{p['weights'] / p['prove_s']:,.0f}",
                f"{p['pk_bytes'] / GB:.2f}", f"{p['peak_rss_bytes'] / GB:.2f}",
            ]
        )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def from_checkpoint(args: argparse.Namespace, scratch: Path) -> list[dict]:
    """N real chunks of a checkpoint, round robin over its shapes, each beside the plan's prediction."""
    from noseprint.circuits.calibration import load_calibration
    from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS
    from noseprint.prover.estimate import estimate

    size = args.chunk_weights[0] if args.chunk_weights else DEFAULT_CHUNK_WEIGHTS
    checkpoint = args.from_checkpoint
    if checkpoint is None:
        from bench.big_checkpoint import synthesize

        checkpoint = scratch / "llama-7b-width"
        synthesize(checkpoint, LLAMA_7B_HIDDEN, LLAMA_7B_FFN, WIDTH_CHECK_LAYERS, LLAMA_7B_HEADS, WIDTH_CHECK_VOCAB)
        print(f"wrote a LLaMA-2-7B-width checkpoint of {WIDTH_CHECK_LAYERS} layers", file=sys.stderr)
    prep = prepare(checkpoint, size, args.tokens)
    table = load_calibration(args.calibration)
    plan = estimate(prep.layout, prep.chunking, 1, table.cores, table)
    print(
        f"plan: {plan.chunks:,} chunks of {len(plan.shapes)} shapes at logrows {plan.logrows}, "
        f"{plan.core_hours:,.1f} core-hours (calibration: {table.machine}, {table.measured})"
    )
    kinds = [s for s in prep.shapes if not args.kinds or s.kind in args.kinds]
    rounds = max(len([c for c in prep.chunks if c.shape == s]) for s in kinds)
    order = [c for i in range(rounds) for s in kinds for c in [c for c in prep.chunks if c.shape == s][i : i + 1]]
    points = measure(prep, order[: args.chunks], args.cores, scratch, size)
    predicted = {shape.kind: cost for shape, cost in zip(prep.shapes, plan.shapes, strict=True)}
    print(f"{'chunk':>18} {'rows':>10} {'logrows':>7}   measured / predicted: setup s, prove s, pk GB, peak GB")
    for p in points:
        c = predicted[p["kind"]]
        print(
            f"{p['chunk']:>18} {p['rows']:>10,} {p['logrows']:>7}   {p['setup_s']:.1f} / {c.setup_s:.1f}, "
            f"{p['prove_s']:.1f} / {c.prove_s:.1f}, {p['pk_bytes'] / GB:.2f} / {c.pk_gb:.2f}, "
            f"{p['peak_rss_bytes'] / GB:.2f} / {c.peak_gb:.2f}"
        )
    return points


def machine_name() -> str:
    import psutil

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    memory = psutil.virtual_memory().total / GB
    return f"{model}, {len(os.sched_getaffinity(0))} cores, {memory:.0f} GiB"


def write_table(points: list[dict], out: Path, machine: str, note: str) -> None:
    from noseprint.circuits.calibration import Calibration
    from noseprint.core.fileio import write_json_atomic

    table = {
        "machine": machine,
        "measured": date.today().isoformat(),
        "command": "python -m bench.calibrate " + shlex.join(sys.argv[1:]),
        "note": note,
        "points": points,
    }
    Calibration.from_dict(table)  # fits, or fails here rather than in `noseprint plan`
    write_json_atomic(out, table)
    print(f"calibration written to {out} ({len(points)} points)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN)
    parser.add_argument("--heads", type=int, help=f"default: hidden / {HEAD_DIM}")
    parser.add_argument("--kv-heads", type=int, help="default: heads")
    parser.add_argument("--ffn", type=int, help="default: 4 x hidden")
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument(
        "--chunk-weights", type=int, nargs="+", help=f"default: {DEFAULT_SIZES}; one size (prove's) for real chunks"
    )
    parser.add_argument("--cores", type=int, help="threads per proof (RAYON_NUM_THREADS); default: every core")
    parser.add_argument("--from-checkpoint", type=Path, help="prove chunks of this checkpoint instead")
    parser.add_argument("--llama-7b-width", action="store_true", help="prove chunks of a LLaMA-2-7B-width model")
    parser.add_argument("--kinds", nargs="+", choices=["qk", "vo", "ffn"], help="only chunks of these kinds")
    parser.add_argument("--chunks", type=int, default=3, help="with --from-checkpoint: how many chunks")
    parser.add_argument("--calibration", type=Path, help="with --from-checkpoint: the table to predict with")
    parser.add_argument("--write", action="store_true", help="replace the calibration table with these points")
    parser.add_argument("--out", type=Path, help="with --write: the file (default circuits/calibration.json)")
    parser.add_argument("--machine", default=None, help="the machine's name in the table (default: CPU, cores, RAM)")
    parser.add_argument("--note", default="", help="with --write: a line of context stored in the table")
    parser.add_argument("--one", nargs=2, metavar=("PHASE", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return child(args.one[0], Path(args.one[1]))
    with tempfile.TemporaryDirectory(prefix="noseprint-calibrate-") as tmp:
        real = args.from_checkpoint or args.llama_7b_width
        points = from_checkpoint(args, Path(tmp)) if real else sweep(args, Path(tmp))
    if not real:
        print_curve(points)
    if args.write:
        from noseprint.circuits.calibration import CALIBRATION_FILE

        write_table(points, args.out or CALIBRATION_FILE, args.machine or machine_name(), args.note)


if __name__ == "__main__":
    main()
