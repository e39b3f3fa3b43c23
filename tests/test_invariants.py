"""The invariant terms: adapters read the right tensors, the circuit graph computes HuRef's terms,
and the terms are invariant to what HuRef claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noseprint.circuits.commitment import committed_inputs
from noseprint.circuits.graph import FingerprintCircuit, choose_term_shifts
from noseprint.core.layout import ROW, CircuitLayout, with_term_shifts
from noseprint.encoder.network import EncoderConfig, InvariantEncoder
from noseprint.models.invariants import canonical_embedding, invariant_cosine, invariant_terms, standardise
from noseprint.models.weights import read_model
from transformers.models.llama.modeling_llama import repeat_kv

from tests.conftest import save_tiny, tiny_gpt2, tiny_llama

TOKENS = 8


def direct_llama_terms(model, token_ids: list[int], layer_index: int) -> np.ndarray:
    """The canonical terms computed from the transformers module's own sub-modules, independently of the
    adapter: norm scales on the reader side, the gated FFN as its two activations' product."""
    cfg = model.config
    with torch.no_grad():
        raw = model.get_input_embeddings().weight[token_ids].double()
        layer = model.model.layers[layer_index]
        e_attn = raw * layer.input_layernorm.weight.double()
        e_ffn = raw * layer.post_attention_layernorm.weight.double()
        attn, mlp = layer.self_attn, layer.mlp
        heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        hd = cfg.hidden_size // heads
        n = raw.shape[0]

        def heads_of(x, count):  # (n, count*hd) -> (1, count, n, hd)
            return x.reshape(n, count, hd).transpose(0, 1).unsqueeze(0)

        def lin(module, x):
            return x @ module.weight.double().T

        q = heads_of(lin(attn.q_proj, e_attn), heads)
        k = repeat_kv(heads_of(lin(attn.k_proj, e_attn), kv_heads), heads // kv_heads)
        v = repeat_kv(heads_of(lin(attn.v_proj, e_attn), kv_heads), heads // kv_heads)
        qk = (q @ k.transpose(-1, -2)).sum(dim=1)[0]
        v_full = v[0].transpose(0, 1).reshape(n, heads * hd)
        vo = lin(attn.o_proj, v_full) @ raw.T
        gated = lin(mlp.gate_proj, e_ffn) * lin(mlp.up_proj, e_ffn)
        ffn = lin(mlp.down_proj, gated) @ raw.T
    return np.stack([qk.numpy(), vo.numpy(), ffn.numpy()])


def direct_gpt2_terms(model, token_ids: list[int], layer_index: int) -> np.ndarray:
    """GPT-2 through its Conv1D modules (x @ W + b), biases removed, E centred (LayerNorm), ln_1 and
    ln_2 scales on the reader side."""
    with torch.no_grad():
        raw = model.transformer.wte.weight[token_ids].double()
        e = raw - raw.mean(dim=1, keepdim=True)
        block = model.transformer.h[layer_index]
        d = e.shape[1]

        def conv1d(module, x):
            return x @ module.weight.double()

        qkv = conv1d(block.attn.c_attn, e * block.ln_1.weight.double())
        q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
        qk = q @ k.T
        vo = conv1d(block.attn.c_proj, v) @ e.T
        ffn = conv1d(block.mlp.c_proj, conv1d(block.mlp.c_fc, e * block.ln_2.weight.double())) @ e.T
    return np.stack([qk.numpy(), vo.numpy(), ffn.numpy()])


FAMILIES = [
    ("llama", lambda: tiny_llama(model_type="llama", heads=4, kv_heads=2), direct_llama_terms),
    ("mistral", lambda: tiny_llama(model_type="mistral", heads=4, kv_heads=1), direct_llama_terms),
    ("qwen2", lambda: tiny_llama(model_type="qwen2", heads=2, kv_heads=2), direct_llama_terms),
    ("gpt2", tiny_gpt2, direct_gpt2_terms),
]


@pytest.mark.parametrize(("name", "make", "direct"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_adapter_terms_match_transformers_modules(tmp_path, name, make, direct):
    model = make()
    folder = save_tiny(model, tmp_path / name)
    read = read_model(folder, TOKENS, None, allow_pickle=False)
    assert read.model_type == name
    assert read.layer_indices == [1, 2]
    ids = [t.id for t in read.tokens]
    ours = invariant_terms(read.embedding, read.layers, list(read.layout.layers))
    expected = np.concatenate([direct(model, ids, i) for i in read.layer_indices])
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)


def circuit_terms(layout: CircuitLayout, committed: list[np.ndarray]) -> np.ndarray:
    module = FingerprintCircuit(layout, InvariantEncoder(EncoderConfig())).double()
    with torch.no_grad():
        raw = module.invariant_terms(*[torch.from_numpy(c.astype(np.float64)) for c in committed])
    return np.stack([t.numpy() for t in raw])


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_circuit_graph_computes_the_reference_terms(tmp_path, kv_heads):
    folder = save_tiny(tiny_llama(heads=4, kv_heads=kv_heads), tmp_path / "m")
    model = read_model(folder, TOKENS, None, allow_pickle=False)
    layout = model.layout
    committed, blinding = committed_inputs(model.tensors(), layout)
    # The circuit sees quantised unit-RMS tensors; compare with the reference on the same values.
    pieces = layout.pieces()
    unblinded = {}
    for piece, tensor in zip(pieces, committed, strict=True):
        unblinded[piece.name] = tensor[:-1] if piece.blinding_axis == ROW else tensor[:, :-1]
        assert len(blinding[piece.name]) == piece.blinding_count
    layers = [
        {role: unblinded[f"layer{i}.{role}"].astype(np.float64) for role, _, _ in shape.tensor_shapes()}
        for i, shape in enumerate(layout.layers)
    ]
    reference = invariant_terms(unblinded["embedding"].astype(np.float64), layers, list(layout.layers))
    np.testing.assert_allclose(circuit_terms(layout, committed), reference, rtol=1e-9, atol=1e-6)


def test_blinding_lines_do_not_change_the_circuit_output(tmp_path):
    folder = save_tiny(tiny_llama(), tmp_path / "m")
    model = read_model(folder, TOKENS, None, allow_pickle=False)
    first, _ = committed_inputs(model.tensors(), model.layout)
    second, _ = committed_inputs(model.tensors(), model.layout)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True)), "blinding must be fresh"
    np.testing.assert_array_equal(circuit_terms(model.layout, first), circuit_terms(model.layout, second))


def test_quantised_circuit_terms_stay_close_to_float_terms(tmp_path):
    folder = save_tiny(tiny_llama(hidden=32, heads=4, kv_heads=2, ffn=64), tmp_path / "m")
    model = read_model(folder, TOKENS, None, allow_pickle=False)
    floats = invariant_terms(model.embedding, model.layers, list(model.layout.layers))
    committed, _ = committed_inputs(model.tensors(), model.layout)
    assert invariant_cosine(floats, circuit_terms(model.layout, committed)) > 0.999


# HuRef's invariances, on random llama-shaped weights.


def random_layer(rng, d=16, heads=4, hd=4, f=24):
    return {
        "q": rng.standard_normal((heads * hd, d)),
        "k": rng.standard_normal((heads * hd, d)),
        "v": rng.standard_normal((heads * hd, d)),
        "o": rng.standard_normal((d, heads * hd)),
        "gate": rng.standard_normal((f, d)),
        "up": rng.standard_normal((f, d)),
        "ffn_out": rng.standard_normal((d, f)),
        "attn_norm": 1.0 + 0.3 * rng.standard_normal((1, d)),
        "ffn_norm": 1.0 + 0.3 * rng.standard_normal((1, d)),
    }


READERS = ("q", "k", "v", "gate", "up", "ffn_in")
WRITERS = ("o", "ffn_out")


def folded(layer):
    """Every norm scale moved into the readers that read it (γ -> 1): the same function."""
    out = dict(layer, attn_norm=np.ones_like(layer["attn_norm"]), ffn_norm=np.ones_like(layer["ffn_norm"]))
    for role in ("q", "k", "v"):
        out[role] = layer[role] * layer["attn_norm"]
    for role in ("gate", "up", "ffn_in"):
        if role in layer:
            out[role] = layer[role] * layer["ffn_norm"]
    return out


def rotated(e, layer, r):
    """The residual stream turned by an orthogonal R: E·R, readers W·R, writers Rᵀ·W."""
    out = dict(layer)
    for role in READERS:
        if role in layer:
            out[role] = layer[role] @ r
    for role in WRITERS:
        out[role] = r.T @ layer[role]
    return e @ r, out


def orthogonal(rng, d, keep_ones=False):
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    if not keep_ones:
        return r
    basis, _ = np.linalg.qr(np.column_stack([np.ones(d), rng.standard_normal((d, d - 1))]))
    inner, _ = np.linalg.qr(rng.standard_normal((d - 1, d - 1)))
    rest = basis[:, 1:] @ inner @ basis[:, 1:].T  # a rotation of the complement of the all-ones direction
    return rest + np.outer(basis[:, 0], basis[:, 0])


@pytest.fixture
def setting():
    from noseprint.core.layout import LayerShape

    rng = np.random.default_rng(0)
    shape = LayerShape(hidden=16, heads=4, kv_heads=4, head_dim=4, ffn=24, gated=True)
    return rng, shape, rng.standard_normal((TOKENS, 16)), random_layer(rng)


def test_norm_folding_then_residual_rotation(setting):
    """The two lines of linear algebra that disguised a copy for free under the version 2 fingerprint."""
    rng, shape, e, layer = setting
    reference = terms_of(e, layer, shape)
    np.testing.assert_allclose(terms_of(e, folded(layer), shape), reference, rtol=1e-9, atol=1e-9)
    e_rot, layer_rot = rotated(e, folded(layer), orthogonal(rng, 16))
    np.testing.assert_allclose(terms_of(e_rot, layer_rot, shape), reference, rtol=1e-8, atol=1e-8)


def test_layernorm_models_ignore_the_all_ones_direction(setting):
    """LayerNorm removes the mean: a constant added to every E row and every writer column changes
    nothing, nor does a rotation that keeps the all-ones direction."""
    rng, shape, e, layer = setting
    from noseprint.core.layout import LayerShape

    plain_shape = LayerShape(hidden=16, heads=4, kv_heads=4, head_dim=4, ffn=24, gated=False)
    plain = {role: value for role, value in layer.items() if role not in ("gate", "up")}
    plain["ffn_in"] = layer["up"]

    def canonical_terms(e, layer):
        return terms_of(canonical_embedding(e, layer_norm=True), layer, plain_shape)

    reference = canonical_terms(e, plain)
    shifted_e = e + rng.standard_normal((TOKENS, 1))
    shifted = dict(plain, o=plain["o"] + rng.standard_normal((1, 16)), ffn_out=plain["ffn_out"] + 1.5)
    np.testing.assert_allclose(canonical_terms(shifted_e, shifted), reference, rtol=1e-8, atol=1e-8)
    e_rot, layer_rot = rotated(e, folded(plain), orthogonal(rng, 16, keep_ones=True))
    np.testing.assert_allclose(canonical_terms(e_rot, layer_rot), reference, rtol=1e-8, atol=1e-8)


def test_the_fingerprint_reads_the_norms(setting):
    """Changing only the norm scales changes the model, and the fingerprint must see it."""
    rng, shape, e, layer = setting
    moved = dict(layer, ffn_norm=layer["ffn_norm"] * (1.0 + 0.5 * rng.standard_normal((1, 16))))
    assert invariant_cosine(terms_of(e, moved, shape), terms_of(e, layer, shape)) < 0.99


def terms_of(e, layer, shape):
    return invariant_terms(e, [layer], [shape])


def test_attention_hidden_unit_and_head_permutation(setting):
    rng, shape, e, layer = setting
    within = np.concatenate([h * 4 + rng.permutation(4) for h in rng.permutation(4)])
    moved = dict(layer, q=layer["q"][within], k=layer["k"][within])
    np.testing.assert_allclose(terms_of(e, moved, shape), terms_of(e, layer, shape), rtol=1e-10)
    vo_perm = dict(layer, v=layer["v"][within], o=layer["o"][:, within])
    np.testing.assert_allclose(terms_of(e, vo_perm, shape), terms_of(e, layer, shape), rtol=1e-10)


def test_ffn_neuron_permutation(setting):
    rng, shape, e, layer = setting
    p = rng.permutation(24)
    moved = dict(layer, gate=layer["gate"][p], up=layer["up"][p], ffn_out=layer["ffn_out"][:, p])
    np.testing.assert_allclose(terms_of(e, moved, shape), terms_of(e, layer, shape), rtol=1e-10)


def test_rotation_of_the_qk_inner_space(setting):
    rng, shape, e, layer = setting
    q_rot, k_rot = layer["q"].copy(), layer["k"].copy()
    for h in range(4):
        r, _ = np.linalg.qr(rng.standard_normal((4, 4)))
        q_rot[h * 4 : h * 4 + 4] = r @ layer["q"][h * 4 : h * 4 + 4]
        k_rot[h * 4 : h * 4 + 4] = r @ layer["k"][h * 4 : h * 4 + 4]
    moved = dict(layer, q=q_rot, k=k_rot)
    np.testing.assert_allclose(terms_of(e, moved, shape), terms_of(e, layer, shape), rtol=1e-9, atol=1e-9)


def test_inverse_and_positive_rescaling(setting):
    _, shape, e, layer = setting
    inverse = dict(layer, q=layer["q"] * 3.0, k=layer["k"] / 3.0, up=layer["up"] * 0.25, ffn_out=layer["ffn_out"] * 4)
    np.testing.assert_allclose(terms_of(e, inverse, shape), terms_of(e, layer, shape), rtol=1e-10)
    scaled = dict(layer, v=layer["v"] * 7.0)
    np.testing.assert_allclose(
        standardise(terms_of(e, scaled, shape)), standardise(terms_of(e, layer, shape)), rtol=1e-9, atol=1e-9
    )


def test_independent_models_have_unrelated_terms(setting):
    rng, shape, e, layer = setting
    other = random_layer(np.random.default_rng(99))
    assert abs(invariant_cosine(terms_of(e, layer, shape), terms_of(e, other, shape))) < 0.3


def test_term_shifts_bound_each_term():
    terms = np.stack([np.full((4, 4), 3.0), np.full((4, 4), 1000.0), np.zeros((4, 4))])
    shifts = choose_term_shifts(terms)
    assert shifts == [0, 6, 0]
    assert all(abs(t).max() / 2**k <= 16 for t, k in zip(terms, shifts, strict=True))
    layout = with_term_shifts(CircuitLayout(tokens=4, hidden=4, layers=()), shifts)
    assert CircuitLayout.from_dict(layout.to_dict()) == layout
