"""Issue 21: the zoo's bases converted to GGUF as llama.cpp converts them (Wq/Wk rows permuted for rotary),
quantised, fingerprinted from the GGUF file and compared with the safetensors original and with the other bases.

    python -m bench.gguf_zoo [--zoo bench/zoo/cache]            # the four zoo bases: F16, Q8_0, Q4_0
    python -m bench.gguf_zoo --wide N [--zoo bench/zoo/cache]   # N 256-wide bases: F16, Q8_0, Q6_K, Q4_K, Q4_0

The zoo's models are 64 wide, shorter than a K-quant super-block (256 values along a row), so K-quants do not
apply to them (llama.cpp would write Q5_0 and Q8_0 instead). `--wide N` trains (once, cached in ZOO/wide;
~6 minutes each on an idle core) N LLaMA bases of the zoo's shape four times wider, every row a whole number
of super-blocks (`bench.zoo.build.build_wide_bases`: same corpus, tokenizer and recipe, 500 steps), and
writes Q4_K and Q6_K with this project's numpy quantiser (`bench/kquants.py`; `gguf` only reads K-quants).
A matrix whose rows do not fill super-blocks falls back as llama.cpp's does (Q4_K to Q5_0, Q6_K to Q8_0);
the table counts the matrices written in each type. Every matrix gets the named type (llama-quantize --pure;
its Q4_K_M mixes in Q6_K for some tensors), norms stay F32. Unrelated bases: the other wide bases and the
zoo's four (64 wide, the same tokenizer, so the same fingerprint tokens and comparable terms).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q
from noseprint.lineage.fingerprint import fingerprint_model
from noseprint.lineage.verdict import verdict
from noseprint.models.invariants import invariant_cosine
from safetensors.numpy import load_file

from bench.kquants import quantize
from bench.zoo.build import WIDE_FOLDER, build_wide_bases

QTYPES = (Q.F16, Q.Q8_0, Q.Q4_0)
WIDE_QTYPES = (Q.F16, Q.Q8_0, Q.Q6_K, Q.Q4_K, Q.Q4_0)
"""Q4_0 beside Q4_K: the same 4.5 bits a weight, one scale per 32 values against a scale and min."""
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


def convert(folder: Path, path: Path, qtype: Q) -> Counter[str]:
    """A LLaMA safetensors folder (word-level tokenizer.json) as a GGUF file: matrices in `qtype` (or its
    llama.cpp fallback), norms F32. Returns how many matrices were written in each type."""
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
    written: Counter[str] = Counter()
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
        if value.ndim == 1:
            writer.add_tensor(target, value)
        elif qtype == Q.F16:
            writer.add_tensor(target, value.astype(np.float16))
            written[qtype.name] += 1
        else:
            data, stored = quantize(value, qtype)
            writer.add_tensor(target, data, raw_dtype=stored)
            written[stored.name] += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written


def terms_of(model: Path, out: Path) -> np.ndarray:
    """The fingerprint's invariant terms, read by the project's own reader (a folder or a .gguf file)."""
    fingerprint_model(model, out, progress=False)
    return np.load(out / "invariants.npy")


def zoo_rows(bases: list[Path], root: Path) -> list[str]:
    """F16, Q8_0, Q4_0 of each zoo base: ICS against its safetensors and the highest against another base."""
    originals = {base.name: terms_of(base, root / f"{base.name}-st") for base in bases}
    rows = [
        "| base | GGUF type | ICS vs its safetensors | verdict | highest ICS vs another base |",
        "|---|---|---|---|---|",
    ]
    for base in bases:
        for qtype in QTYPES:
            path = root / f"{base.name}-{qtype.name}.gguf"
            convert(base, path, qtype)
            terms = terms_of(path, root / path.stem)
            same = invariant_cosine(terms, originals[base.name])
            other = max(invariant_cosine(terms, t) for name, t in originals.items() if name != base.name)
            rows.append(f"| {base.name} | {qtype.name} | {same:.4f} | {verdict(same, z_cosine=0.0)} | {other:.4f} |")
    return rows


def wide_rows(bases: list[Path], unrelated: list[Path], root: Path) -> list[str]:
    """`WIDE_QTYPES` of each wide base: the types written, GGUF size, seconds to quantise and to
    fingerprint, ICS and verdict against its own safetensors and the highest against an unrelated base (the
    other wide bases and `unrelated`: the zoo's bases share the tokenizer, so their terms compare)."""
    originals = {base.name: terms_of(base, root / f"{base.name}-st") for base in [*bases, *unrelated]}
    rows = [
        "| base | GGUF type | matrices written as | MB | quantise s | fingerprint s | ICS vs its safetensors "
        "| verdict | highest ICS vs an unrelated base | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for base in bases:
        for qtype in WIDE_QTYPES:
            path = root / f"{base.name}-{qtype.name}.gguf"
            started = time.perf_counter()
            written = convert(base, path, qtype)
            converted = time.perf_counter()
            terms = terms_of(path, root / path.stem)
            fingerprinted = time.perf_counter()
            same = invariant_cosine(terms, originals[base.name])
            other, nearest = max(
                (invariant_cosine(terms, t), name) for name, t in originals.items() if name != base.name
            )
            types = ", ".join(f"{count} {name}" for name, count in sorted(written.items()))
            rows.append(
                f"| {base.name} | {qtype.name} | {types} | {path.stat().st_size / 1e6:.2f} "
                f"| {converted - started:.1f} | {fingerprinted - converted:.1f} | {same:.4f} "
                f"| {verdict(same, z_cosine=0.0)} | {other:.4f} ({nearest}) | {verdict(other, z_cosine=0.0)} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=Path("bench/zoo/cache"))
    parser.add_argument("--wide", type=int, default=0, metavar="N", help="instead: N 256-wide bases and K-quants")
    args = parser.parse_args()
    bases = sorted(p for p in args.zoo.iterdir() if p.is_dir() and p.name.startswith("base") and "-" not in p.name)
    with tempfile.TemporaryDirectory() as tmp:
        if args.wide:
            rows = wide_rows(build_wide_bases(args.zoo / WIDE_FOLDER, args.wide), bases, Path(tmp))
        else:
            rows = zoo_rows(bases, Path(tmp))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
