"""Issue 21: the zoo's bases converted to GGUF as llama.cpp converts them (Wq/Wk rows permuted for rotary),
in F16, Q8_0 and Q4_0, fingerprinted from the GGUF file and compared with the safetensors original and with
the other bases.

    python -m bench.gguf_zoo [--zoo bench/zoo/cache]

The zoo's models are 64 wide, so K-quants (256-value super-blocks) do not apply to them, and `gguf` cannot
write K-quants anyway (llama.cpp's C code does); tests/test_gguf.py reads Q4_K and Q6_K files.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import load_file

from lineage.fingerprint import fingerprint_model
from lineage.verdict import verdict
from models.invariants import invariant_cosine

QTYPES = (Q.F16, Q.Q8_0, Q.Q4_0)
GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
              "post_attention_layernorm": "ffn_norm"}  # fmt: skip
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight",
             "model.norm.weight": "output_norm.weight"}  # fmt: skip


def rotary_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py `LlamaModel.permute`."""
    per_head = weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
    return per_head.swapaxes(1, 2).reshape(weights.shape)


def convert(folder: Path, path: Path, qtype: Q) -> Path:
    """A LLaMA safetensors folder (word-level tokenizer.json) as a GGUF file: matrices in `qtype`, norms F32."""
    config = json.loads((folder / "config.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_key_length(config["head_dim"])
    writer.add_value_length(config["head_dim"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([word for word, _ in sorted(vocab.items(), key=lambda item: item[1])])
    for name, value in load_file(str(folder / "model.safetensors")).items():
        value = value.astype(np.float32)
        if name in TOP_NAMES:
            target = TOP_NAMES[name]
        else:
            _, _, index, *rest = name.split(".")
            target = f"blk.{index}.{GGUF_NAMES['.'.join(rest[:-1])]}.weight"
        if target.endswith("attn_q.weight"):
            value = rotary_permute(value, config["num_attention_heads"])
        elif target.endswith("attn_k.weight"):
            value = rotary_permute(value, config["num_key_value_heads"])
        if value.ndim == 1 or qtype == Q.F16:
            writer.add_tensor(target, value if value.ndim == 1 else value.astype(np.float16))
        else:
            writer.add_tensor(target, gguf.quants.quantize(value, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=Path("bench/zoo/cache"))
    args = parser.parse_args()
    bases = sorted(p for p in args.zoo.iterdir() if p.is_dir() and p.name.startswith("base") and "-" not in p.name)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        originals = {}
        for base in bases:
            fingerprint_model(base, root / f"{base.name}-st", progress=False)
            originals[base.name] = np.load(root / f"{base.name}-st" / "invariants.npy")
        print("| base | GGUF type | ICS vs its safetensors | verdict | highest ICS vs another base |")
        print("|---|---|---|---|---|")
        for base in bases:
            for qtype in QTYPES:
                path = convert(base, root / f"{base.name}-{qtype.name}.gguf", qtype)
                fingerprint_model(path, root / f"{base.name}-{qtype.name}", progress=False)
                terms = np.load(root / f"{base.name}-{qtype.name}" / "invariants.npy")
                same = invariant_cosine(terms, originals[base.name])
                other = max(invariant_cosine(terms, t) for name, t in originals.items() if name != base.name)
                print(f"| {base.name} | {qtype.name} | {same:.4f} | {verdict(same, z_cosine=0.0)} | {other:.4f} |")


if __name__ == "__main__":
    main()
