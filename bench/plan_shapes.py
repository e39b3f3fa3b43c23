"""`noseprint plan` for the models people own: LLaMA-2-7B, Qwen2-7B and Llama-3-70B shapes, and issue 35's
(Qwen3-8B, Qwen3-30B-A3B, Qwen3-235B-A22B, gpt-oss-120b, DeepSeek-V3, Gemma-3-27B).

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
ISSUE35 = {
    "Qwen3-8B": {
        "model_type": "qwen3", "hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
    },
    "Qwen3-30B-A3B": {
        "model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "moe_intermediate_size": 768,
        "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "norm_topk_prob": True, "vocab_size": 151936,
    },
    "Qwen3-235B-A22B": {
        "model_type": "qwen3_moe", "hidden_size": 4096, "num_hidden_layers": 94, "num_attention_heads": 64,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 12288, "moe_intermediate_size": 1536,
        "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "vocab_size": 151936,
    },
    "gpt-oss-120b": {
        "model_type": "gpt_oss", "hidden_size": 2880, "num_hidden_layers": 36, "num_attention_heads": 64,
        "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 2880, "num_local_experts": 128,
        "num_experts_per_tok": 4, "sliding_window": 128, "vocab_size": 201088,
        "layer_types": ["sliding_attention", "full_attention"] * 18,
    },
    "DeepSeek-V3": {
        "model_type": "deepseek_v3", "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
        "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
        "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3,
        "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
        "v_head_dim": 128, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
        "vocab_size": 129280,
    },
    "Gemma-3-27B": {
        "model_type": "gemma3",
        "text_config": {
            "model_type": "gemma3_text", "hidden_size": 5376, "num_hidden_layers": 62, "num_attention_heads": 32,
            "num_key_value_heads": 16, "head_dim": 128, "intermediate_size": 21504, "query_pre_attn_scalar": 168,
            "sliding_window": 1024, "vocab_size": 262208,
        },
    },
}  # fmt: skip
"""Issue 35's families at their published configs' sizes (the fields the adapters read): `prove` refuses the
mixtures of experts, whose rows here are the chunks of the products the circuits have (`plan` warns)."""


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
    print("| shape | weights | chunks | logrows | peak GB per proof | core-hours | wall hours | prove |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="noseprint-plan-") as tmp:
        for name, config in {**SHAPES, **ISSUE35}.items():
            p = plan(config, Path(tmp) / name, args)
            print(
                f"| {name} | {p.get('weights', 0):,} | {p['chunks']:,} | {p.get('logrows')} | {p['peak_gb']:.1f} | "
                f"{p['core_hours']:,.0f} | {p['wall_hours']:,.1f} | "
                f"{'refuses (experts)' if any('refuses' in w for w in p.get('warnings', [])) else 'yes'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
