"""Fingerprinting a 7B-shaped checkpoint lazily, beside loading the whole model as HuRef's code does.

    python bench/big_checkpoint.py                 # LLaMA-2-7B shape: 32 layers, hidden 4096, FFN 11008
    python bench/big_checkpoint.py --layers 8      # a quicker variant

Writes random fp16 weights in safetensors shards of ~2 GB with an index (13.5 GB on disk at full
size), then times `noseprint fingerprint` (wall seconds, peak RSS of the process). For comparison,
on a smaller shape that fits (hidden 1024, 8 layers), the same run also times
`AutoModelForCausalLM.from_pretrained` plus the invariants, against `noseprint fingerprint` on it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from noseprint.models.demo_model import build_tokenizer  # noqa: E402

from bench.measure import run_measured  # noqa: E402

SHARD_BYTES = 2 * 2**30


def synthesize(folder: Path, hidden: int, ffn: int, layers: int, heads: int, vocab_words: int) -> int:
    """A LLaMA checkpoint of random fp16 weights, sharded with an index, written tensor by tensor."""
    folder.mkdir(parents=True)
    tokenizer = build_tokenizer(vocab_words)
    vocab = len(tokenizer)
    tokenizer.save_pretrained(str(folder))
    config = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
        "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": heads, "vocab_size": vocab, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "torch_dtype": "float16",
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "lm_head.weight": (vocab, hidden)}
    shapes["model.norm.weight"] = (hidden,)
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{p}self_attn.{name}.weight"] = (hidden, hidden)
        shapes[f"{p}mlp.gate_proj.weight"] = (ffn, hidden)
        shapes[f"{p}mlp.up_proj.weight"] = (ffn, hidden)
        shapes[f"{p}mlp.down_proj.weight"] = (hidden, ffn)
        shapes[f"{p}input_layernorm.weight"] = (hidden,)
        shapes[f"{p}post_attention_layernorm.weight"] = (hidden,)
    generator = torch.Generator().manual_seed(0)
    weight_map, shard, shard_bytes, index, total = {}, {}, 0, 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, index
        if shard:
            name = f"model-{index:05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            weight_map.update({key: name for key in shard})
            shard, shard_bytes, index = {}, 0, index + 1

    for name, shape in shapes.items():
        tensor = torch.empty(shape, dtype=torch.float16).normal_(0, 0.02, generator=generator)
        shard[name] = tensor
        shard_bytes += tensor.numel() * 2
        total += tensor.numel()
        if shard_bytes >= SHARD_BYTES:
            flush()
    flush()
    index_data = {"metadata": {"total_size": total * 2}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_data))
    return total


def measure(command: list[str]) -> tuple[float, float, str]:
    result, seconds, peak = run_measured(command)
    if result.returncode:
        raise SystemExit(f"{command} failed: {result.stderr}")
    return seconds, peak, result.stdout


WHOLE_MODEL = """
import sys, numpy as np, torch
from transformers import AutoModelForCausalLM
sys.path.insert(0, {root!r})
from noseprint.core.tokens import select
from noseprint.models.tokens import load_tokenizer
from noseprint.models.invariants import invariant_terms
from noseprint.models.architectures import llama_shape
import json
folder = {folder!r}
model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
ids = select(load_tokenizer(folder), 16).ids
e = model.get_input_embeddings().weight[ids].double().detach().numpy()
shape = llama_shape(json.load(open(folder + "/config.json")))
layers = []
for layer in model.model.layers[-2:]:
    a, m = layer.self_attn, layer.mlp
    layers.append({{k: v.weight.double().detach().numpy() for k, v in dict(q=a.q_proj, k=a.k_proj, v=a.v_proj,
                  o=a.o_proj, gate=m.gate_proj, up=m.up_proj, ffn_out=m.down_proj).items()}})
print(invariant_terms(e, layers, [shape, shape]).shape)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=32)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "noseprint.cli", "fingerprint"]
    with tempfile.TemporaryDirectory(prefix="noseprint-big-", dir=str(Path.home())) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        params = synthesize(root / "big", 4096, 11008, args.layers, 32, 31_997)
        size = sum(p.stat().st_size for p in (root / "big").glob("*.safetensors"))
        print(
            f"7B-shaped checkpoint: {params / 1e9:.2f}B parameters, {size / 2**30:.1f} GB fp16 in "
            f"{len(list((root / 'big').glob('*.safetensors')))} shards (written in {time.perf_counter() - start:.0f} s)"
        )
        seconds, rss, _ = measure([*cli, str(root / "big"), "--out", str(root / "fp-big")])
        print(f"noseprint fingerprint, 7B shape: {seconds:.1f} s, peak RSS {rss:.2f} GB")
        shutil.rmtree(root / "big")

        params = synthesize(root / "small", 1024, 2816, 8, 16, 31_997)
        print(f"smaller shape for the side-by-side: {params / 1e6:.0f}M parameters (hidden 1024, 8 layers)")
        seconds, rss, _ = measure([*cli, str(root / "small"), "--out", str(root / "fp-small")])
        print(f"  noseprint fingerprint (lazy, two layers):         {seconds:6.1f} s, peak RSS {rss:.2f} GB")
        code = WHOLE_MODEL.format(root=str(ROOT), folder=str(root / "small"))
        seconds, rss, _ = measure([sys.executable, "-c", code])
        print(f"  whole model (AutoModelForCausalLM) + invariants:  {seconds:6.1f} s, peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
