"""GGUF files written here from tiny transformers models, as llama.cpp's converter writes them (Wq/Wk rows
permuted for rotary), in every quantisation the fingerprint must read."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from core.errors import UsageError
from lineage.fingerprint import fingerprint_model
from lineage.verdict import verdict
from models.gguf import gguf_tokenizer, open_gguf
from models.invariants import invariant_cosine
from models.tokens import load_tokenizer, select_tokens
from tests.conftest import save_tiny, tiny_llama

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 256, 4, 2, 512, 3
"""The smallest LLaMA whose rows fill K-quant super-blocks (256 values)."""
QUANTISED_BY_GGUF = (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0)
"""Types `gguf.quants.quantize` writes; Q4_K and Q6_K it only reads (llama.cpp's C code quantises them)."""
K_QUANTS = (Q.Q4_K, Q.Q6_K)
SCALE_OFFSETS = {Q.Q4_K: (0, 2), Q.Q6_K: (208,)}
"""Byte offsets of the fp16 super-block scales (d, dmin) in a Q4_K and a Q6_K block (ggml-common.h)."""
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


def random_k_blocks(rows: int, cols: int, qtype: Q, rng: np.random.Generator) -> np.ndarray:
    """Valid K-quant bytes: random quants and sub-scales, sane fp16 super-block scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    for offset in SCALE_OFFSETS[qtype]:
        data[:, :, offset : offset + 2] = np.frombuffer(np.float16(0.002).tobytes(), np.uint8)
    return data.reshape(rows, -1)


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
    rng = np.random.default_rng(0)
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
            writer.add_tensor(target, random_k_blocks(*value.shape, qtype, rng), raw_dtype=qtype)
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


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0])
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
    assert select_tokens(gguf_tokenizer(path), 12) == select_tokens(load_tokenizer(folder), 12)
    assert gguf_tokenizer(path)("zzzznotaword") == []
