"""Every adapter against the `transformers` module of a tiny model of its family (random weights).

The direct computation uses the module's own sub-modules and the split conventions of its modeling
code (Falcon's own `_split_heads`, NeoX's view-then-chunk, Phi-3's query_pos slicing), never the
adapter's, so a wrong name, transposition or head order in an adapter shows up here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from models.invariants import invariant_terms
from models.weights import read_model
from tests.conftest import save_tiny

TOKENS = 8


def lin(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x @ weight.double().T


def terms_from_heads(e, q, k, v, o_weight, ffn_in, ffn_out_weight) -> np.ndarray:
    """q, k, v: (n, heads, hd) with K/V already broadcast to the query heads; ffn_in: (f, d) weights."""
    n = e.shape[0]
    qk = torch.einsum("nhd,mhd->nm", q, k)
    vo = lin(o_weight, v.reshape(n, -1)) @ e.T
    ffn = lin(ffn_out_weight, lin(ffn_in, e)) @ e.T
    return np.stack([qk.numpy(), vo.numpy(), ffn.numpy()])


def heads(x: torch.Tensor, count: int) -> torch.Tensor:
    return x.reshape(x.shape[0], count, -1)


def broadcast(kv: torch.Tensor, query_heads: int) -> torch.Tensor:
    return kv.repeat_interleave(query_heads // kv.shape[1], dim=1)


def direct_phi3(model, e, i):
    cfg, layer = model.config, model.model.layers[i]
    hd = cfg.hidden_size // cfg.num_attention_heads
    qkv = lin(layer.self_attn.qkv_proj.weight, e)
    query_pos, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    q = heads(qkv[:, :query_pos], cfg.num_attention_heads)
    k = broadcast(heads(qkv[:, query_pos : query_pos + kv], cfg.num_key_value_heads), cfg.num_attention_heads)
    v = broadcast(heads(qkv[:, query_pos + kv :], cfg.num_key_value_heads), cfg.num_attention_heads)
    gate_w, up_w = layer.mlp.gate_up_proj.weight.double().chunk(2, dim=0)
    return terms_from_heads(e, q, k, v, layer.self_attn.o_proj.weight, gate_w * up_w, layer.mlp.down_proj.weight)


def direct_llama_like(model, e, i):
    cfg, layer = model.config, model.model.layers[i]
    attn, mlp = layer.self_attn, layer.mlp
    q = heads(lin(attn.q_proj.weight, e), cfg.num_attention_heads)
    k = broadcast(heads(lin(attn.k_proj.weight, e), cfg.num_key_value_heads), cfg.num_attention_heads)
    v = broadcast(heads(lin(attn.v_proj.weight, e), cfg.num_key_value_heads), cfg.num_attention_heads)
    gated = mlp.gate_proj.weight.double() * mlp.up_proj.weight.double()
    return terms_from_heads(e, q, k, v, attn.o_proj.weight, gated, mlp.down_proj.weight)


def direct_neox(model, e, i):
    cfg, layer = model.config, model.gpt_neox.layers[i]
    qkv = lin(layer.attention.query_key_value.weight, e).view(e.shape[0], cfg.num_attention_heads, -1)
    q, k, v = qkv.chunk(3, dim=-1)
    return terms_from_heads(
        e, q, k, v, layer.attention.dense.weight, layer.mlp.dense_h_to_4h.weight, layer.mlp.dense_4h_to_h.weight
    )


def direct_gptj(model, e, i):
    cfg, layer = model.config, model.transformer.h[i]
    a = layer.attn
    q, k, v = (heads(lin(m.weight, e), cfg.n_head) for m in (a.q_proj, a.k_proj, a.v_proj))
    return terms_from_heads(e, q, k, v, a.out_proj.weight, layer.mlp.fc_in.weight, layer.mlp.fc_out.weight)


def direct_opt(model, e, i):
    cfg, layer = model.config, model.model.decoder.layers[i]
    a = layer.self_attn
    q, k, v = (heads(lin(m.weight, e), cfg.num_attention_heads) for m in (a.q_proj, a.k_proj, a.v_proj))
    return terms_from_heads(e, q, k, v, a.out_proj.weight, layer.fc1.weight, layer.fc2.weight)


def direct_falcon(model, e, i):
    cfg, layer = model.config, model.transformer.h[i]
    fused = lin(layer.self_attention.query_key_value.weight, e)[None]
    q, k, v = (
        x[0].reshape(e.shape[0], -1, layer.self_attention.head_dim) for x in layer.self_attention._split_heads(fused)
    )
    k, v = broadcast(k, cfg.num_attention_heads), broadcast(v, cfg.num_attention_heads)
    return terms_from_heads(
        e, q, k, v, layer.self_attention.dense.weight, layer.mlp.dense_h_to_4h.weight, layer.mlp.dense_4h_to_h.weight
    )


def direct_bert(model, e, i):
    cfg, layer = model.config, model.encoder.layer[i]
    s = layer.attention.self
    q, k, v = (heads(lin(m.weight, e), cfg.num_attention_heads) for m in (s.query, s.key, s.value))
    return terms_from_heads(
        e, q, k, v, layer.attention.output.dense.weight, layer.intermediate.dense.weight, layer.output.dense.weight
    )


def embedding_rows(model, ids):
    e = model.get_input_embeddings().weight[ids].double()
    project_in = getattr(getattr(getattr(model, "model", None), "decoder", None), "project_in", None)
    return lin(project_in.weight, e) if project_in is not None else e


COMMON = dict(vocab_size=303, num_hidden_layers=3)
CASES = {
    "gemma": (dict(hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=4),
              direct_llama_like),
    "phi3": (dict(hidden_size=16, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0),
             direct_phi3),
    "gpt_neox": (dict(hidden_size=16, intermediate_size=32, num_attention_heads=4), direct_neox),
    "gptj": (dict(n_embd=16, n_head=4, rotary_dim=4, n_layer=3), direct_gptj),
    "opt": (dict(hidden_size=16, ffn_dim=32, num_attention_heads=4, word_embed_proj_dim=8), direct_opt),
    "falcon-multi-query": (dict(hidden_size=16, num_attention_heads=4, multi_query=True), direct_falcon),
    "falcon-new-decoder": (dict(hidden_size=16, num_attention_heads=4, new_decoder_architecture=True, num_kv_heads=2),
                           direct_falcon),
    "falcon-per-head": (dict(hidden_size=16, num_attention_heads=4, multi_query=False), direct_falcon),
    "bert": (dict(hidden_size=16, intermediate_size=32, num_attention_heads=4), direct_bert),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapter_matches_the_transformers_module(tmp_path, case):
    kwargs, direct = CASES[case]
    model_type = case.split("-")[0]
    config = AutoConfig.for_model(model_type, **{**COMMON, **kwargs})
    torch.manual_seed(0)
    model = (AutoModel if model_type == "bert" else AutoModelForCausalLM).from_config(config).eval()
    folder = save_tiny(model, tmp_path / case)
    read = read_model(folder, TOKENS, None, allow_pickle=False)
    assert read.model_type == model_type and read.layer_indices == [1, 2]
    ids = [t.id for t in read.tokens]
    with torch.no_grad():
        e = embedding_rows(model, ids)
        expected = np.concatenate([direct(model, e, i) for i in read.layer_indices])
    ours = invariant_terms(read.embedding, read.layers, list(read.layout.layers))
    np.testing.assert_allclose(ours, expected, rtol=1e-8, atol=1e-12)
