"""GGUF files written here from tiny transformers models, as llama.cpp's converter writes them (Wq/Wk rows
permuted for rotary), in every quantisation the fingerprint must read; K-quants by bench/kquants.py."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from noseprint.core.errors import UsageError
from noseprint.core.tokens import select
from noseprint.lineage.fingerprint import fingerprint_model
from noseprint.lineage.verdict import verdict
from noseprint.models.gguf import TENSOR_SUFFIXES, gguf_tokenizer, open_gguf
from noseprint.models.invariants import invariant_cosine
from noseprint.models.tokens import load_tokenizer

from bench.kquants import K_QUANT_FALLBACK, quantize
from tests.conftest import save_tiny, tiny_llama

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 256, 4, 2, 512, 3
"""The smallest LLaMA whose rows fill K-quant super-blocks (256 values)."""
QUANTISED_BY_GGUF = (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0)
"""Types `gguf.quants.quantize` writes; Q4_K and Q6_K it only reads, so bench/kquants.py writes them."""
K_QUANTS = (Q.Q4_K, Q.Q6_K)
BITS_PER_WEIGHT = {Q.Q4_K: 4.5, Q.Q6_K: 6.5625}
"""ggml-common.h: 144 and 210 bytes per 256 weights."""
RELATIVE_RMS_ERROR = {Q.Q4_K: 0.075, Q.Q6_K: 0.019}
"""Bounds on RMS error / RMS weight for Gaussian weights. Q4_K: 16 levels over a 32-value sub-block's range
(~4.1σ) leave step/√12 ≈ 0.079σ with plain min/max, which the search beats (0.072 measured). Q6_K: 32 steps
to a 16-value sub-block's largest magnitude (~1.9σ) leave ≈ 0.017σ, plus the int8 sub-scales (0.0177 measured)."""
FP16_SPACING = 2**-10
"""Relative spacing of fp16 numbers, as the super-block scales are stored: the error of an exact block."""
NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
         "post_attention_layernorm": "ffn_norm"}  # fmt: skip


def rotary_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py `LlamaModel.permute`: each head's two rotary halves interleaved."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(model, tokenizer, path: Path, qtype: Q, permute: bool = True) -> Path:
    """The model's tensors in GGUF names and layout; matrices in `qtype`, norms F32 (as llama.cpp does)."""
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(LAYERS)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_context_length(64)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    for name, value in state.items():
        if name == "model.embed_tokens.weight":
            target = "token_embd.weight"
        elif name == "lm_head.weight":
            target = "output.weight"
        elif name == "model.norm.weight":
            target = "output_norm.weight"
        else:
            _, _, index, *rest = name.split(".")
            target = f"blk.{index}.{NAMES['.'.join(rest[:-1])]}.weight"
        if permute and target.endswith("attn_q.weight"):
            value = rotary_permute(value, HEADS)
        if permute and target.endswith("attn_k.weight"):
            value = rotary_permute(value, KV_HEADS)
        if value.ndim == 1:
            writer.add_tensor(target, value.astype(np.float32))
        elif qtype in K_QUANTS:
            data, stored = quantize(value, qtype)
            assert stored == qtype  # rows of 256 and 512 values fill super-blocks
            writer.add_tensor(target, data, raw_dtype=qtype)
        elif qtype in (Q.F32, Q.F16):
            writer.add_tensor(target, gguf.quants.quantize(value, qtype))
        else:
            writer.add_tensor(target, gguf.quants.quantize(value, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The tiny model as safetensors (the reference) and its tokenizer."""
    folder = tmp_path_factory.mktemp("st") / "model"
    model = tiny_llama(hidden=HIDDEN, heads=HEADS, kv_heads=KV_HEADS, ffn=FFN, layers=LAYERS)
    save_tiny(model, folder)
    from transformers import AutoTokenizer

    return model, AutoTokenizer.from_pretrained(str(folder)), folder


def reference(original, tmp_path) -> tuple[np.ndarray, dict]:
    record = fingerprint_model(original[2], tmp_path / "fp-st", progress=False)
    return np.load(tmp_path / "fp-st" / "invariants.npy"), record


def test_an_f32_gguf_fingerprints_as_its_safetensors_despite_the_rotary_permutation(original, tmp_path):
    """llama.cpp's Wq/Wk row permutation is the same within every head, so QK is unchanged (models/gguf.py):
    the terms agree to float32 rounding (the permuted rows are summed in another order) and z to its last
    fixed-point unit (floor(z·2^12) may round the other way)."""
    model, tokenizer, _ = original
    path = write_gguf(model, tokenizer, tmp_path / "m.gguf", Q.F32)
    stored = open_gguf(path).tensor("model.layers.2.self_attn.q_proj.weight")
    assert not np.allclose(stored, model.model.layers[2].self_attn.q_proj.weight.detach().numpy())  # permuted
    terms, record = reference(original, tmp_path)
    gguf_record = fingerprint_model(path, tmp_path / "fp-gguf", progress=False)
    gguf_terms = np.load(tmp_path / "fp-gguf" / "invariants.npy")
    assert np.abs(gguf_terms - terms).max() <= 1e-6 * np.abs(terms).max()  # float32 storage of float32 weights
    assert np.abs(np.subtract(gguf_record["z"], record["z"])).max() <= 1 and gguf_record["model_type"] == "llama"
    tokens = (tmp_path / "fp-gguf" / "tokens.json").read_text()
    assert tokens == (tmp_path / "fp-st" / "tokens.json").read_text()  # chosen from the GGUF vocabulary alike


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, *K_QUANTS])
def test_quantised_gguf_is_the_same_base_model(original, tmp_path, qtype):
    model, tokenizer, _ = original
    path = write_gguf(model, tokenizer, tmp_path / f"m-{qtype.name}.gguf", qtype)
    stored = open_gguf(path).matrix("model.layers.1.mlp.up_proj.weight")
    exact = model.model.layers[1].mlp.up_proj.weight.detach().numpy()
    error = np.abs(np.asarray(stored) - exact).max() / np.abs(exact).max()
    assert 0 < error < 0.2  # really quantised (lossy), and read in the right orientation
    np.testing.assert_array_equal(stored.block((3, 9), (40, 77)), np.asarray(stored)[3:9, 40:77])
    terms, _ = reference(original, tmp_path)
    fingerprint_model(path, tmp_path / "fp", progress=False)
    ics = invariant_cosine(np.load(tmp_path / "fp" / "invariants.npy"), terms)
    assert verdict(ics, z_cosine=0.0) == "same base model", ics


@pytest.mark.parametrize("qtype", K_QUANTS)
def test_k_quant_bytes_are_ggmls_layout_with_the_error_of_their_bits(qtype):
    """bench/kquants.py's bytes, decoded by `gguf.quants.dequantize` (llama.cpp's own Python reading of
    ggml's layout): any misplaced bit of a scale, min or code would show as a large error."""
    rng = np.random.default_rng(0)
    weights = (0.02 * rng.standard_normal((64, 512))).astype(np.float32)
    data, stored = quantize(weights, qtype)
    assert stored == qtype and data.dtype == np.uint8
    assert data.nbytes * 8 / weights.size == BITS_PER_WEIGHT[qtype]
    decoded = gguf.quants.dequantize(data, qtype)
    assert decoded.shape == weights.shape
    relative = np.sqrt(np.mean((decoded - weights) ** 2) / np.mean(weights**2))
    assert relative < RELATIVE_RMS_ERROR[qtype], relative
    q4_0 = gguf.quants.dequantize(gguf.quants.quantize(weights, Q.Q4_0), Q.Q4_0)
    q8_0 = gguf.quants.dequantize(gguf.quants.quantize(weights, Q.Q8_0), Q.Q8_0)
    errors = {name: np.sqrt(np.mean((d - weights) ** 2)) for name, d in (("q4_0", q4_0), ("q8_0", q8_0))}
    assert errors["q8_0"] < np.sqrt(np.mean((decoded - weights) ** 2)) < errors["q4_0"]  # ranked by bits


@pytest.mark.parametrize("qtype", K_QUANTS)
def test_k_quants_keep_constant_and_zero_blocks_and_fall_back_as_llama_cpp(qtype):
    """Degenerate sub-blocks (all equal, all zero, one spike) stay finite and near exact; rows that are not
    a whole number of 256-value super-blocks are written in llama.cpp's fallback type."""
    blocks = np.stack([np.zeros(256), np.full(256, 0.5), np.full(256, -0.5), np.eye(1, 256, 7)[0] * 3])
    decoded = gguf.quants.dequantize(quantize(blocks.astype(np.float32), qtype)[0], qtype)
    assert np.abs(decoded - blocks).max() <= np.abs(blocks).max() * FP16_SPACING
    narrow = np.random.default_rng(1).standard_normal((4, 96)).astype(np.float32)
    data, stored = quantize(narrow, qtype)
    assert stored == K_QUANT_FALLBACK[qtype]
    assert np.abs(gguf.quants.dequantize(data, stored) - narrow).max() < 0.2 * np.abs(narrow).max()
    assert quantize(narrow[:, :40], qtype)[1] == Q.F16  # nor the fallback's 32-value blocks: llama.cpp's F16


@pytest.mark.parametrize("qtype", K_QUANTS)
def test_k_quants_are_read_block_by_block_as_gguf_dequantises_them(original, tmp_path, qtype):
    model, tokenizer, _ = original
    path = write_gguf(model, tokenizer, tmp_path / f"m-{qtype.name}.gguf", qtype)
    checkpoint = open_gguf(path)
    raw = next(t for t in gguf.GGUFReader(str(path)).tensors if t.name == "blk.1.ffn_down.weight")
    whole = gguf.quants.dequantize(raw.data, qtype).astype(np.float64)
    down = checkpoint.matrix("model.layers.1.mlp.down_proj.weight")
    assert down.shape == (HIDDEN, FFN) == whole.shape
    np.testing.assert_array_equal(down.block((10, 20), (256, 512)), whole[10:20, 256:512])
    np.testing.assert_array_equal(down.block(None, (100, 300)), whole[:, 100:300])  # across super-blocks
    np.testing.assert_array_equal(down.T.block((0, 8), None), whole[:, :8].T)
    assert np.abs(whole).max() > 0
    record = fingerprint_model(path, tmp_path / "fp", progress=False)
    assert len(record["z"]) > 0 and record["fingerprinted_layers"] == [1, 2]


def test_gguf_errors_are_clear(original, tmp_path):
    model, tokenizer, _ = original
    with pytest.raises(UsageError, match="not found"):
        open_gguf(tmp_path / "absent.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(UsageError, match="not a readable GGUF"):
        open_gguf(tmp_path / "junk.gguf")
    writer = gguf.GGUFWriter(str(tmp_path / "mamba.gguf"), "mamba")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UsageError, match="architecture 'mamba' is not supported"):
        open_gguf(tmp_path / "mamba.gguf")
    checkpoint = open_gguf(write_gguf(model, tokenizer, tmp_path / "m.gguf", Q.F16))
    with pytest.raises(UsageError, match="missing from the GGUF file"):
        checkpoint.tensor("model.layers.9.self_attn.q_proj.weight")


def test_gguf_vocabulary_selects_the_tokenizers_words(original, tmp_path):
    """Words are found as whole pieces of the vocabulary, SentencePiece's ▁ prefix included."""
    model, tokenizer, folder = original
    path = write_gguf(model, tokenizer, tmp_path / "m.gguf", Q.F16)
    assert select(gguf_tokenizer(path), 12).ids == select(load_tokenizer(folder), 12).ids
    assert gguf_tokenizer(path)("zzzznotaword") == []


# Issue 35: Qwen3 (q/k norms), SmolLM3 (llama.cpp permutes its Wq/Wk rows as LLaMA's), Qwen3-MoE (merged experts).

GGUF_FAMILIES = {"qwen3": "qwen3", "smollm3": "smollm3", "qwen3_moe": "qwen3moe"}


def write_family_gguf(folder: Path, arch: str, path: Path) -> Path:
    """The saved checkpoint's tensors under GGUF names (gguf's own TensorNameMap), F32; a MoE layer's experts merged
    per projection into (experts, rows, cols) tensors as llama.cpp's converter stacks them."""
    import json
    import re

    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    config = json.loads((folder / "config.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    layers, heads, kv = config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]
    names = get_tensor_name_map(next(k for k, v in MODEL_ARCH_NAMES.items() if v == arch), layers)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(layers)
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_key_length(config["head_dim"])
    writer.add_value_length(config["head_dim"])
    writer.add_context_length(64)
    writer.add_layer_norm_rms_eps(1e-6)
    if arch == "qwen3moe":
        writer.add_expert_count(config["num_local_experts"])
        writer.add_expert_used_count(config["num_experts_per_tok"])
        writer.add_expert_feed_forward_length(config["moe_intermediate_size"])
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    merged: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, value in sorted(state.items()):
        expert = re.match(r"(.*\.experts)\.(\d+)\.(.*)", name)
        if expert:
            merged.setdefault(f"{expert[1]}.{expert[3]}", []).append((int(expert[2]), value))
            continue
        if arch == "smollm3" and name.endswith(("q_proj.weight", "k_proj.weight")):
            value = rotary_permute(value, heads if "q_proj" in name else kv)
        writer.add_tensor(names.get_name(name, try_suffixes=TENSOR_SUFFIXES), value.astype(np.float32))
    for name, parts in merged.items():
        stacked = np.stack([value for _, value in sorted(parts, key=lambda part: part[0])])
        writer.add_tensor(names.get_name(name, try_suffixes=TENSOR_SUFFIXES), stacked.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("model_type", sorted(GGUF_FAMILIES))
def test_issue35_families_read_from_gguf_as_from_safetensors(tmp_path, model_type):
    from tests.test_lineage_families import build

    folder = save_tiny(build(model_type, 0), tmp_path / "st")
    path = write_family_gguf(folder, GGUF_FAMILIES[model_type], tmp_path / "m.gguf")
    assert open_gguf(path).config["model_type"] == model_type
    terms, _ = reference((None, None, folder), tmp_path)
    record = fingerprint_model(path, tmp_path / "fp-gguf", progress=False)
    gguf_terms = np.load(tmp_path / "fp-gguf" / "invariants.npy")
    assert record["model_type"] == model_type
    assert np.abs(gguf_terms - terms).max() <= 1e-6 * np.abs(terms).max()
    assert invariant_cosine(terms, gguf_terms) > 1 - 1e-9
