"""bench.zoo.reparam: every re-parametrisation keeps the logits, really moves the weights, and leaves
HuRef's invariant terms (computed by the prover's own code) unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from noseprint.models.architectures import llama_shape
from noseprint.models.demo_model import build_tokenizer
from noseprint.models.invariants import invariant_cosine, invariant_terms

from bench.zoo.reparam import (
    REPARAMETRISATIONS,
    attention_shape,
    decoder_layers,
    max_logit_change,
    permute_vocabulary,
)

ROLES = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
    "ffn_out": "mlp.down_proj",
}
INVARIANT_TOKENS = [3, 7, 11, 19, 23, 42, 57, 64, 80, 99]


def tiny_model(vocab: int = 100, tie: bool = False, seed: int = 0):
    """hidden 64, 4 query heads sharing 2 kv heads of 16 dims, FFN 128, 2 layers. The init scale is
    large enough for sharp attention: a wrong Q/K transform must show in the logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        initializer_range=0.3,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float().eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def input_ids():
    return torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))


def layer_weights(model) -> list[dict[str, np.ndarray]]:
    """The adapter's roles (models.architectures.llama_layer), read from the live modules."""
    norms = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}

    def read(layer, name: str) -> np.ndarray:
        return np.atleast_2d(layer.get_submodule(name).weight.detach().double().numpy())  # norms as (1, hidden)

    return [{role: read(layer, name) for role, name in {**ROLES, **norms}.items()} for layer in decoder_layers(model)]


def terms(model, token_ids: list[int] = INVARIANT_TOKENS) -> np.ndarray:
    e = model.get_input_embeddings().weight[token_ids].detach().double().numpy()
    layers = layer_weights(model)
    return invariant_terms(e, layers, [llama_shape(model.config.to_dict())] * len(layers))


def max_weight_change(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def logit_tolerance(model, ids) -> float:
    with torch.no_grad():
        scale = float(model(input_ids=ids).logits.abs().max())
    return 1e-4 * scale + 1e-5


@pytest.mark.parametrize("name", list(REPARAMETRISATIONS))
def test_reparametrisation_preserves_function_and_invariants(model, input_ids, name):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    derived = REPARAMETRISATIONS[name](model, seed=5)
    assert derived is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was mutated"
    assert max_logit_change(model, derived, input_ids) < logit_tolerance(model, input_ids)
    assert max_weight_change(model, derived) > 1e-3, "weights did not change"
    original, moved = terms(model), terms(derived)
    assert invariant_cosine(original, moved) > 0.9999
    np.testing.assert_allclose(moved, original, rtol=1e-4, atol=1e-5 * np.abs(original).max())


@pytest.mark.parametrize("name", list(REPARAMETRISATIONS))
def test_reparametrisation_is_seeded(model, name):
    transform = REPARAMETRISATIONS[name]
    first, again, other = transform(model, seed=1), transform(model, seed=1), transform(model, seed=2)
    assert max_weight_change(first, again) == 0.0
    assert max_weight_change(first, other) > 1e-3


def test_general_qk_rotation_keeps_huref_terms_but_not_the_function(model, input_ids):
    """The caveat: HuRef's QK term is invariant to any orthogonal map of the Q/K head space, but
    under RoPE only rotations inside each RoPE plane preserve the model; a generic one does not."""
    import copy

    shape = attention_shape(model)
    derived = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in decoder_layers(derived):
            q = layer.self_attn.q_proj.weight.view(shape.heads, shape.head_dim, -1)
            k = layer.self_attn.k_proj.weight.view(shape.kv_heads, shape.head_dim, -1)
            for j in range(shape.kv_heads):
                r, _ = torch.linalg.qr(torch.randn(shape.head_dim, shape.head_dim, generator=g))
                k[j] = r @ k[j]
                for h in range(j * shape.group, (j + 1) * shape.group):
                    q[h] = r @ q[h]
    assert invariant_cosine(terms(model), terms(derived)) > 0.9999
    assert max_logit_change(model, derived, input_ids) > 100 * logit_tolerance(model, input_ids)


# Vocabulary permutation: folder to folder, tokenizer included.

TEXT = "the people of the world have time to make it work and some zyzzyva"


def write_tiny(folder, vocab: int, tie: bool):
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(300)  # 303 ids: <unk> <s> </s> + 300 words
    tiny_model(vocab=vocab, tie=tie, seed=3).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def encode(folder) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return [tokenizer.bos_token_id] + tokenizer.encode(TEXT, add_special_tokens=False)


# vocab 320 > the tokenizer's 303: padding rows are shuffled in too, so tokens get ids past 303.
@pytest.mark.parametrize(("vocab", "tie"), [(303, False), (320, True)], ids=["untied", "tied-padded"])
def test_permute_vocabulary(tmp_path, vocab, tie):
    from noseprint.lineage.fingerprint import fingerprint_model
    from transformers import AutoModelForCausalLM

    src = write_tiny(tmp_path / "src", vocab, tie)
    new_id_of = permute_vocabulary(src, tmp_path / "dst", seed=7)
    dst = tmp_path / "dst"
    assert sorted(new_id_of.tolist()) == list(range(vocab))
    a = AutoModelForCausalLM.from_pretrained(str(src)).eval()
    b = AutoModelForCausalLM.from_pretrained(str(dst)).eval()

    # (a) the same text through each folder's tokenizer and model gives the same logits per token string
    ids_a, ids_b = encode(src), encode(dst)
    assert 0 in ids_a, "the text should include an unknown word"
    assert ids_b == [int(new_id_of[i]) for i in ids_a]
    with torch.no_grad():
        logits_a = a(input_ids=torch.tensor([ids_a])).logits
        logits_b = b(input_ids=torch.tensor([ids_b])).logits[..., new_id_of]
    tolerance = 1e-4 * float(logits_a.abs().max()) + 1e-5
    assert float((logits_a - logits_b).abs().max()) < tolerance
    assert max_logit_change(a, b, ids_a, new_id_of) < tolerance

    # special ids follow their tokens
    config = json.loads((dst / "config.json").read_text())
    generation = json.loads((dst / "generation_config.json").read_text())
    assert config["bos_token_id"] == generation["bos_token_id"] == int(new_id_of[1])
    assert config["eos_token_id"] == generation["eos_token_id"] == int(new_id_of[2])
    assert config["tie_word_embeddings"] is tie
    if tie:
        assert b.lm_head.weight.data_ptr() == b.model.embed_tokens.weight.data_ptr()

    # (b) the prover's fingerprint is the same: tokens chosen by string find the moved rows
    record_a = fingerprint_model(src, tmp_path / "fp_a")
    record_b = fingerprint_model(dst, tmp_path / "fp_b")
    assert record_a["z"] == record_b["z"]
    terms_a, terms_b = np.load(tmp_path / "fp_a" / "invariants.npy"), np.load(tmp_path / "fp_b" / "invariants.npy")
    assert invariant_cosine(terms_a, terms_b) > 0.9999
    np.testing.assert_array_equal(terms_a, terms_b)
    tokens_a = json.loads((tmp_path / "fp_a" / "tokens.json").read_text())["tokens"]
    tokens_b = json.loads((tmp_path / "fp_b" / "tokens.json").read_text())["tokens"]
    assert [t["string"] for t in tokens_a] == [t["string"] for t in tokens_b]
    assert [t["id"] for t in tokens_b] == [int(new_id_of[t["id"]]) for t in tokens_a]

    # (c) the embedding matrices differ
    emb_a, emb_b = a.model.embed_tokens.weight.detach(), b.model.embed_tokens.weight.detach()
    assert float((emb_a - emb_b).abs().max()) > 1e-3
    torch.testing.assert_close(emb_b[new_id_of], emb_a, rtol=0, atol=0)


def test_permute_vocabulary_refuses_a_unigram_tokenizer(tmp_path):
    src = write_tiny(tmp_path / "src", 303, False)
    data = json.loads((src / "tokenizer.json").read_text())
    data["model"] = {"type": "Unigram", "unk_id": 0, "vocab": [[t, 0.0] for t in data["model"]["vocab"]]}
    (src / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="vocab dict"):
        permute_vocabulary(src, tmp_path / "dst", seed=0)
    assert not (tmp_path / "dst").exists()
