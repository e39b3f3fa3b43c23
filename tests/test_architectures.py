"""Every adapter against the `transformers` module of a tiny model of its family (random weights).

The direct computation uses the module's own sub-modules and the split conventions of its modeling
code (Falcon's fused layouts as its forward cuts them, NeoX's view-then-chunk, Phi-3's query_pos slicing), never the
adapter's, so a wrong name, transposition or head order in an adapter shows up here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from noseprint.models.invariants import invariant_terms
from noseprint.models.weights import read_model
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from tests.conftest import save_tiny, with_trained_norms

TOKENS = 8


def lin(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return x @ weight.double().T


def terms_from_heads(e, q, k, v, o_weight, ffn_hidden, ffn_out_weight) -> np.ndarray:
    """q, k, v: (n, heads, hd) with K/V already broadcast to the query heads (from E·γa); ffn_hidden: the
    (n, ffn) FFN activations before the output projection (from E·γf); e: the canonical E (writers)."""
    n = e.shape[0]
    qk = torch.einsum("nhd,mhd->nm", q, k)
    vo = lin(o_weight, v.reshape(n, -1)) @ e.T
    ffn = lin(ffn_out_weight, ffn_hidden) @ e.T
    return np.stack([qk.numpy(), vo.numpy(), ffn.numpy()])


def centred(e: torch.Tensor) -> torch.Tensor:
    """LayerNorm families: the canonical E has each row's mean removed."""
    return e - e.mean(dim=1, keepdim=True)


def scaled(e: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    return e * norm.weight.double()


def heads(x: torch.Tensor, count: int) -> torch.Tensor:
    return x.reshape(x.shape[0], count, -1)


def broadcast(kv: torch.Tensor, query_heads: int) -> torch.Tensor:
    return kv.repeat_interleave(query_heads // kv.shape[1], dim=1)


def direct_phi3(model, e, i):
    cfg, layer = model.config, model.model.layers[i]
    hd = cfg.hidden_size // cfg.num_attention_heads
    qkv = lin(layer.self_attn.qkv_proj.weight, scaled(e, layer.input_layernorm))
    query_pos, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    q = heads(qkv[:, :query_pos], cfg.num_attention_heads)
    k = broadcast(heads(qkv[:, query_pos : query_pos + kv], cfg.num_key_value_heads), cfg.num_attention_heads)
    v = broadcast(heads(qkv[:, query_pos + kv :], cfg.num_key_value_heads), cfg.num_attention_heads)
    gate, up = lin(layer.mlp.gate_up_proj.weight, scaled(e, layer.post_attention_layernorm)).chunk(2, dim=1)
    return terms_from_heads(e, q, k, v, layer.self_attn.o_proj.weight, gate * up, layer.mlp.down_proj.weight)


def direct_llama_like(model, e, i):
    """LLaMA and Gemma: Gemma's RMSNorm scales by 1 + weight."""
    cfg, layer = model.config, model.model.layers[i]
    offset = 1.0 if cfg.model_type.startswith("gemma") else 0.0
    attn, mlp = layer.self_attn, layer.mlp
    e_attn = e * (layer.input_layernorm.weight.double() + offset)
    e_ffn = e * (layer.post_attention_layernorm.weight.double() + offset)
    q = heads(lin(attn.q_proj.weight, e_attn), cfg.num_attention_heads)
    k = broadcast(heads(lin(attn.k_proj.weight, e_attn), cfg.num_key_value_heads), cfg.num_attention_heads)
    v = broadcast(heads(lin(attn.v_proj.weight, e_attn), cfg.num_key_value_heads), cfg.num_attention_heads)
    gated = lin(mlp.gate_proj.weight, e_ffn) * lin(mlp.up_proj.weight, e_ffn)
    return terms_from_heads(e, q, k, v, attn.o_proj.weight, gated, mlp.down_proj.weight)


def direct_neox(model, e, i):
    cfg, layer = model.config, model.gpt_neox.layers[i]
    e = centred(e)
    qkv = lin(layer.attention.query_key_value.weight, scaled(e, layer.input_layernorm))
    q, k, v = qkv.view(e.shape[0], cfg.num_attention_heads, -1).chunk(3, dim=-1)
    hidden = lin(layer.mlp.dense_h_to_4h.weight, scaled(e, layer.post_attention_layernorm))
    return terms_from_heads(e, q, k, v, layer.attention.dense.weight, hidden, layer.mlp.dense_4h_to_h.weight)


def direct_gptj(model, e, i):
    cfg, layer = model.config, model.transformer.h[i]
    e = centred(e)
    a, e_in = layer.attn, scaled(e, layer.ln_1)  # attention and FFN in parallel on one norm
    q, k, v = (heads(lin(m.weight, e_in), cfg.n_head) for m in (a.q_proj, a.k_proj, a.v_proj))
    return terms_from_heads(e, q, k, v, a.out_proj.weight, lin(layer.mlp.fc_in.weight, e_in), layer.mlp.fc_out.weight)


def direct_opt(model, e, i):
    cfg, layer = model.config, model.model.decoder.layers[i]
    e = centred(e)
    a, e_attn = layer.self_attn, scaled(e, layer.self_attn_layer_norm)
    q, k, v = (heads(lin(m.weight, e_attn), cfg.num_attention_heads) for m in (a.q_proj, a.k_proj, a.v_proj))
    hidden = lin(layer.fc1.weight, scaled(e, layer.final_layer_norm))
    return terms_from_heads(e, q, k, v, a.out_proj.weight, hidden, layer.fc2.weight)


def falcon_split(fused, attention):
    """Falcon's fused query_key_value output cut into heads as its modeling code cuts it.

    Written out here because transformers 5.25 removed the module's `_split_heads`; the three layouts are the
    ones `FalconAttention.forward` reads: new decoder (per key/value group: its queries, then its key and value),
    multi-query (all query heads, then one key and one value), per-head (query, key, value interleaved per head).
    """
    tokens, head_dim = fused.shape[0], attention.head_dim
    if attention.new_decoder_architecture:
        grouped = fused.view(tokens, attention.num_kv_heads, -1, head_dim)
        return grouped[:, :, :-2].flatten(1, 2), grouped[:, :, -2], grouped[:, :, -1]
    heads = fused.view(tokens, -1, head_dim)
    if attention.multi_query:
        return heads[:, :-2], heads[:, -2:-1], heads[:, -1:]
    q, k, v = heads.view(tokens, attention.num_heads, 3, head_dim).unbind(2)
    return q, k, v


def direct_falcon(model, e, i):
    cfg, layer = model.config, model.transformer.h[i]
    e = centred(e)
    attn_norm = layer.ln_attn if hasattr(layer, "ln_attn") else layer.input_layernorm
    ffn_norm = layer.ln_mlp if hasattr(layer, "ln_mlp") else layer.input_layernorm
    fused = lin(layer.self_attention.query_key_value.weight, scaled(e, attn_norm))
    q, k, v = falcon_split(fused, layer.self_attention)
    k, v = broadcast(k, cfg.num_attention_heads), broadcast(v, cfg.num_attention_heads)
    hidden = lin(layer.mlp.dense_h_to_4h.weight, scaled(e, ffn_norm))
    return terms_from_heads(e, q, k, v, layer.self_attention.dense.weight, hidden, layer.mlp.dense_4h_to_h.weight)


def direct_bert(model, e, i):
    """Post-LN: the attention reads the previous layer's output norm, the FFN the attention's output norm."""
    cfg, layer = model.config, model.encoder.layer[i]
    e = centred(e)
    before = model.encoder.layer[i - 1].output.LayerNorm if i else model.embeddings.LayerNorm
    s = layer.attention.self
    q, k, v = (heads(lin(m.weight, scaled(e, before)), cfg.num_attention_heads) for m in (s.query, s.key, s.value))
    hidden = lin(layer.intermediate.dense.weight, scaled(e, layer.attention.output.LayerNorm))
    return terms_from_heads(e, q, k, v, layer.attention.output.dense.weight, hidden, layer.output.dense.weight)


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
    model = with_trained_norms((AutoModel if model_type == "bert" else AutoModelForCausalLM).from_config(config).eval())
    folder = save_tiny(model, tmp_path / case)
    read = read_model(folder, TOKENS, None, allow_pickle=False)
    assert read.model_type == model_type and read.layer_indices == [1, 2]
    ids = [t.id for t in read.tokens]
    with torch.no_grad():
        e = embedding_rows(model, ids)
        expected = np.concatenate([direct(model, e, i) for i in read.layer_indices])
    ours = invariant_terms(read.embedding, read.layers, list(read.layout.layers))
    np.testing.assert_allclose(ours, expected, rtol=1e-8, atol=1e-12)
