"""`noseprint plan` for the models people own: LLaMA-2-7B, Qwen2-7B and Llama-3-70B shapes.

    python -m bench.plan_shapes                       # 64 nodes of 16 cores, the default chunk size
    python -m bench.plan_shapes --chunk-weights 1048576

`plan` reads only config.json, so each shape is a folder holding its published configuration (sizes only);
the figures come from the stored calibration (`circuits/calibration.json`, `python -m bench.calibrate`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS

SHAPES = {
    "LLaMA-2-7B": {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
    },
    "Qwen2-7B": {
        "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    },
    "Llama-3-70B": {
        "model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
    },
}  # fmt: skip


def plan(config: dict, folder: Path, args: argparse.Namespace) -> dict:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config | {"tie_word_embeddings": False}))
    command = [sys.executable, "-m", "noseprint.cli", "plan", str(folder), "--json", "--nodes", str(args.nodes)]
    command += ["--cores", str(args.cores), "--chunk-weights", str(args.chunk_weights)]
    if args.memory_gb:
        command += ["--memory-gb", str(args.memory_gb)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return dict(json.loads(result.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=64)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--memory-gb", type=float, default=None)
    parser.add_argument("--chunk-weights", type=int, default=DEFAULT_CHUNK_WEIGHTS)
    args = parser.parse_args()
    print(f"{args.nodes} nodes of {args.cores} cores, --chunk-weights {args.chunk_weights:,}")
    print("| shape | weights | chunks | logrows | peak GB per proof | core-hours | wall hours |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="noseprint-plan-") as tmp:
        for name, config in SHAPES.items():
            p = plan(config, Path(tmp) / name, args)
            print(
                f"| {name} | {p.get('weights', 0):,} | {p['chunks']:,} | {p.get('logrows')} | {p['peak_gb']:.1f} | "
                f"{p['core_hours']:,.0f} | {p['wall_hours']:,.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
