"""Every adapter against the `transformers` module of a tiny model of its family (random weights).

The direct computation uses the module's own sub-modules and the split conventions of its modeling
code (Falcon's fused layouts as its forward cuts them, NeoX's view-then-chunk, Phi-3's query_pos slicing), never the
adapter's, so a wrong name, transposition or head order in an adapter shows up here.
"""

from __future__ import annotations

import inspect

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


# ---------------------------------------------------------------------------------------------
# Issue 35's families: q/k norms, mixtures of experts, latent attention. The canonical terms are computed here from
# the modules' own parameters (in-memory layouts: fused experts (experts, 2·ffn, hidden), gpt-oss's (experts,
# hidden, 2·ffn) interleaved), by docs/invariants.md's formulas; and the adapter's matrices are checked against the
# modules' forward passes (q, k and v as the attention receives them, each expert's output, the router's logits).

EXPERTS = dict(num_local_experts=4, num_experts_per_tok=2)
GQA = dict(hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=4)
MLA = dict(
    num_key_value_heads=4,
    moe_intermediate_size=8,
    first_k_dense_replace=1,
    n_group=2,
    topk_group=1,
    q_lora_rank=8,
    kv_lora_rank=8,
    qk_rope_head_dim=4,
    qk_nope_head_dim=4,
    v_head_dim=6,
    n_shared_experts=1,
)
ISSUE35 = {
    "qwen3": {},
    "gemma3_text": {},
    "olmo2": {},
    "smollm3": dict(pad_token_id=0),
    "mixtral": EXPERTS,
    "qwen3_moe": dict(EXPERTS, moe_intermediate_size=8),
    "gpt_oss": EXPERTS,
    "deepseek_v3": dict(EXPERTS, **MLA),
    "deepseek_v3-dense-q": dict(EXPERTS, **{**MLA, "q_lora_rank": None}),
}  # fmt: skip
MOE_TYPES = ("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3")


def build35(case: str, **extra):
    model_type = case.split("-")[0]
    config = AutoConfig.for_model(
        model_type, **{**COMMON, **GQA, "bos_token_id": 1, "eos_token_id": 2, **ISSUE35[case], **extra}
    )
    torch.manual_seed(0)
    kwargs = {"experts_implementation": "eager"} if model_type in MOE_TYPES else {}
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", **kwargs)
    return with_trained_norms(model.double().eval())


def offset_of(model) -> float:
    return 1.0 if model.config.model_type == "gemma3_text" else 0.0


def head_normalised(x: torch.Tensor, weight: torch.Tensor, gamma: torch.Tensor, groups: int, e_norm) -> torch.Tensor:
    """(n, rows) activation x = (E·γa)·Wᵀ of a q or k whose norm spans `groups` blocks: each block divided by the
    Frobenius norm of its rows of W·diag(γa), γ (tiled over the blocks) applied."""
    rows = weight.shape[0]
    w = weight.double() * e_norm
    norms = (w**2).reshape(groups, -1).sum(dim=1).sqrt().repeat_interleave(rows // groups)
    return x * gamma.double().repeat(rows // gamma.numel()) / norms


def direct_attention(model, layer, e_attn, gamma_a):
    """q, k, v (n, heads, hd) with K/V broadcast, and o's weight: separate projections, q/k norms made canonical."""
    cfg, attn = model.config, layer.self_attn
    projected = {name: lin(getattr(attn, f"{name}_proj").weight, e_attn) for name in ("q", "k", "v")}
    if getattr(attn, "q_norm", None) is not None:
        whole = attn.q_norm.weight.numel() != cfg.head_dim  # OLMo 2: one norm over the whole projection
        for name in ("q", "k"):
            weight, norm = getattr(attn, f"{name}_proj").weight, getattr(attn, f"{name}_norm")
            groups = 1 if whole else weight.shape[0] // cfg.head_dim
            projected[name] = head_normalised(projected[name], weight, norm.weight + offset_of(model), groups, gamma_a)
    q = heads(projected["q"], cfg.num_attention_heads)
    k = broadcast(heads(projected["k"], cfg.num_key_value_heads), cfg.num_attention_heads)
    v = broadcast(heads(projected["v"], cfg.num_key_value_heads), cfg.num_attention_heads)
    return q, k, v, attn.o_proj.weight


def layer_attn_gamma(model, layer) -> torch.Tensor:
    return layer.input_layernorm.weight.double() + offset_of(model)


def layer_ffn_gamma(model, layer) -> torch.Tensor:
    norm = (
        layer.pre_feedforward_layernorm if model.config.model_type == "gemma3_text" else layer.post_attention_layernorm
    )
    return norm.weight.double() + offset_of(model)


def expert_blocks(model, mlp) -> tuple[list, list, list]:
    """Each expert's gate (ffn, hidden), up and down (hidden, ffn), from the in-memory fused tensors."""
    experts = mlp.experts
    gates, ups, downs = [], [], []
    for e in range(experts.gate_up_proj.shape[0]):
        both = experts.gate_up_proj[e].double()
        if model.config.model_type == "gpt_oss":  # (hidden, 2·ffn), columns g0 u0 g1 u1 ...
            gates.append(both[:, ::2].T)
            ups.append(both[:, 1::2].T)
            downs.append(experts.down_proj[e].double().T)
        else:
            half = both.shape[0] // 2
            gates.append(both[:half])
            ups.append(both[half:])
            downs.append(experts.down_proj[e].double())
    shared = getattr(mlp, "shared_experts", None)
    if shared is not None:
        gates.append(shared.gate_proj.weight.double())
        ups.append(shared.up_proj.weight.double())
        downs.append(shared.down_proj.weight.double())
    return gates, ups, downs


def routing(model, mlp, e, gamma_f) -> torch.Tensor:
    """(n, experts) dense routing weights: the router's softmax (DeepSeek: normalised sigmoid times its scaling
    factor) at the RMS-normalised rows times γf, the router's bias added."""
    router = mlp.router if hasattr(mlp, "router") else mlp.gate
    rows = e / e.pow(2).mean(dim=1, keepdim=True).sqrt() * gamma_f
    logits = lin(router.weight, rows) + (router.bias.double() if getattr(router, "bias", None) is not None else 0.0)
    if model.config.model_type == "deepseek_v3":
        scores = torch.sigmoid(logits)
        return scores / scores.sum(dim=1, keepdim=True) * model.config.routed_scaling_factor
    return torch.softmax(logits, dim=1)


def direct_ffn(model, layer, e, e_ffn) -> torch.Tensor:
    mlp = layer.mlp
    if not hasattr(mlp, "experts"):
        return lin(mlp.down_proj.weight, lin(mlp.gate_proj.weight, e_ffn) * lin(mlp.up_proj.weight, e_ffn)) @ e.T
    gates, ups, downs = expert_blocks(model, mlp)
    weights = routing(model, mlp, e, layer_ffn_gamma(model, layer))
    total = torch.zeros(e.shape[0], e.shape[0], dtype=torch.float64)
    for index, (gate, up, down) in enumerate(zip(gates, ups, downs, strict=True)):
        weight = weights[:, index : index + 1] if index < weights.shape[1] else 1.0  # shared experts: 1
        total += ((e_ffn @ gate.T) * (e_ffn @ up.T) * weight) @ (e @ down).T
    return total


def latent_factor(weight, e_norm) -> float:
    return 1.0 / float((weight.double() * e_norm).pow(2).sum().sqrt())


def direct_mla(model, layer, e_attn, gamma_a):
    """QK and VO of DeepSeek's latent attention from its modules: q = q_b·γq·q_a/‖q_a·γa‖ (or q_proj), per head
    [nope | rope]; k_h = [kv_b's k rows of h·γkv·c/‖c·γa‖ | k_rope], v_h likewise; summed over heads."""
    cfg, attn = model.config, layer.self_attn
    heads_, nope = cfg.num_attention_heads, cfg.qk_nope_head_dim
    if attn.q_a_proj is not None:
        latent = lin(attn.q_a_proj.weight, e_attn) * attn.q_a_layernorm.weight.double()
        q = lin(attn.q_b_proj.weight, latent) * latent_factor(attn.q_a_proj.weight, gamma_a)
    else:
        q = lin(attn.q_proj.weight, e_attn)
    rank = cfg.kv_lora_rank
    kv_a = attn.kv_a_proj_with_mqa.weight
    c = lin(kv_a[:rank], e_attn) * attn.kv_a_layernorm.weight.double() * latent_factor(kv_a[:rank], gamma_a)
    kv = heads(lin(attn.kv_b_proj.weight, c), heads_)  # (n, heads, nope + v)
    k_rope = lin(kv_a[rank:], e_attn)
    q = heads(q, heads_)
    k = torch.cat([kv[:, :, :nope], k_rope[:, None, :].expand(-1, heads_, -1)], dim=2)
    return q, k, kv[:, :, nope:]


def direct_issue35(model, e, i):
    layer, model_type = model.model.layers[i], model.config.model_type
    gamma_a = e.new_ones(e.shape[1]) if model_type == "olmo2" else layer_attn_gamma(model, layer)
    gamma_f = e.new_ones(e.shape[1]) if model_type == "olmo2" else layer_ffn_gamma(model, layer)
    e_attn, e_ffn = e * gamma_a, e * gamma_f
    if model_type == "deepseek_v3":
        q, k, v = direct_mla(model, layer, e_attn, gamma_a)
        o_weight = layer.self_attn.o_proj.weight
    else:
        q, k, v, o_weight = direct_attention(model, layer, e_attn, gamma_a)
    n = e.shape[0]
    qk = torch.einsum("nhd,mhd->nm", q, k)
    vo = lin(o_weight, v.reshape(n, -1)) @ e.T
    return np.stack([qk.numpy(), vo.numpy(), direct_ffn(model, layer, e, e_ffn).numpy()])


@pytest.mark.parametrize("case", sorted(ISSUE35))
def test_issue35_adapter_terms_match_the_modules(tmp_path, case):
    model = build35(case)
    folder = save_tiny(model, tmp_path / case)
    read = read_model(folder, TOKENS, None, allow_pickle=False)
    assert read.model_type == case.split("-")[0] and read.layer_indices == [1, 2]
    with torch.no_grad():
        e = embedding_rows(model, [t.id for t in read.tokens])
        expected = np.concatenate([direct_issue35(model, e, i) for i in read.layer_indices])
    ours = invariant_terms(read.embedding, read.layers, list(read.layout.layers))
    np.testing.assert_allclose(ours, expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max())


def recorded_attention(model, layer, x, monkeypatch) -> dict[str, torch.Tensor]:
    """q, k, v (n, heads, dim) as the module hands them to its attention function, on input rows x, every token at
    position 0 (cos 1, sin 0: the rotary embedding is the identity)."""
    import sys

    attn = layer.self_attn
    seen: dict[str, torch.Tensor] = {}

    def record(module, query, key, value, attention_mask, *args, **kwargs):
        seen.update(q=query[0].transpose(0, 1), k=key[0].transpose(0, 1), v=value[0].transpose(0, 1))
        n, heads_ = query.shape[2], query.shape[1]
        return query.new_zeros(1, n, heads_, value.shape[-1]), None

    monkeypatch.setattr(sys.modules[type(attn).__module__], "eager_attention_forward", record)
    rotary, positions = model.model.rotary_emb, torch.zeros(1, x.shape[0], dtype=torch.long)
    if "layer_type" in inspect.signature(rotary.forward).parameters:  # Gemma 3: local and global rotary bases
        cos, sin = rotary(x[None], positions, layer_type=attn.layer_type)
    else:
        cos, sin = rotary(x[None], positions)
    with torch.no_grad():
        attn(hidden_states=x[None], position_embeddings=(torch.ones_like(cos), torch.zeros_like(sin)),
             attention_mask=None)  # fmt: skip
    return seen


def per_head(act: np.ndarray, count: int) -> torch.Tensor:
    return torch.from_numpy(act).reshape(act.shape[0], count, -1)


def assert_parallel(ours: torch.Tensor, theirs: torch.Tensor, label: str) -> None:
    """Equal up to one positive factor per (token, head): what an RMS normalisation of q or k changes."""
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
    assert float((1 - cosine).abs().max()) < 1e-10, f"{label}: {cosine}"


@pytest.mark.parametrize("case", sorted(ISSUE35))
def test_issue35_adapter_matrices_reproduce_the_modules_projections(tmp_path, monkeypatch, case):
    """The adapter's q, k, v rows (read from the saved checkpoint) against the module's forward pass on random rows:
    equal where nothing normalises them, parallel per token and head where a q/k norm or a latent norm does (the
    canonical form divides by a Frobenius norm where the model divides by each token's RMS); o against o_proj;
    each expert's output and the router's logits against the MoE block's own."""
    model_type = case.split("-")[0]
    model = build35(case, **({"rope_interleave": False} if model_type == "deepseek_v3" else {}))
    if model_type == "gpt_oss":  # the adapter reads no biases: compare the matrices alone
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("bias") and "router" not in name:
                    parameter.zero_()
    read = read_model(save_tiny(model, tmp_path / case), TOKENS, None, allow_pickle=False)
    x = torch.randn(5, model.config.hidden_size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cfg = model.config
    for position, index in enumerate(read.layer_indices):
        layer, w = model.model.layers[index], read.layers[position]
        shape = read.layout.layers[position]
        theirs = recorded_attention(model, layer, x, monkeypatch)
        ours = {role: per_head(x.numpy() @ w[role].T, count)
                for role, count in (("q", shape.heads), ("k", shape.kv_heads), ("v", shape.kv_heads))}  # fmt: skip
        if model_type == "deepseek_v3":
            nope, v_dim = cfg.qk_nope_head_dim, cfg.v_head_dim
            assert_parallel(ours["q"], theirs["q"], "q")
            assert_parallel(ours["k"][:, :, :nope], theirs["k"][:, :, :nope], "k_nope")
            torch.testing.assert_close(ours["k"][:, :, nope:], theirs["k"][:, :, nope:], rtol=1e-10, atol=1e-12)
            assert_parallel(ours["v"][:, :, :v_dim], theirs["v"], "v")
            assert not ours["v"][:, :, v_dim:].any(), "the value heads are padded with zero rows"
            o = torch.from_numpy(w["o"]).reshape(cfg.hidden_size, shape.heads, -1)
            torch.testing.assert_close(o[:, :, :v_dim].reshape(cfg.hidden_size, -1), layer.self_attn.o_proj.weight)
            assert not o[:, :, v_dim:].any()
        else:
            check = assert_parallel if getattr(layer.self_attn, "q_norm", None) is not None else _assert_equal
            check(ours["q"], theirs["q"], "q")
            check(ours["k"], theirs["k"], "k")
            _assert_equal(ours["v"], theirs["v"], "v")
            torch.testing.assert_close(torch.from_numpy(w["o"]), layer.self_attn.o_proj.weight)
        if "routing" in w:
            check_experts(model, layer.mlp, w, x)


def _assert_equal(ours: torch.Tensor, theirs: torch.Tensor, label: str) -> None:
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=label)


def expert_activation(model_type: str, gate: torch.Tensor, up: torch.Tensor, experts) -> torch.Tensor:
    if model_type == "gpt_oss":
        gate, up = gate.clamp(max=experts.limit), up.clamp(-experts.limit, experts.limit)
        return (up + 1) * gate * torch.sigmoid(gate * experts.alpha)
    return torch.nn.functional.silu(gate) * up


def check_experts(model, mlp, w, x) -> None:
    """Every routed expert's output on x (the module's experts, told to route each row to that one expert with
    weight 1) against the adapter's stacked blocks; the router's logits against x·Wrouterᵀ + b; DeepSeek's shared
    expert against the stack's last block."""
    routing_, model_type = w["routing"], model.config.model_type
    f, n = routing_.expert_ffn, x.shape[0]
    gate, up, down = (torch.from_numpy(w[role]) for role in ("gate", "up", "ffn_out"))
    with torch.no_grad():
        for e in range(routing_.experts):
            theirs = mlp.experts(x, torch.full((n, 1), e), torch.ones(n, 1, dtype=torch.float64))
            block = slice(e * f, (e + 1) * f)
            ours = expert_activation(model_type, x @ gate[block].T, x @ up[block].T, mlp.experts) @ down[:, block].T
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        router = mlp.router if hasattr(mlp, "router") else mlp.gate
        logits = router(x)[0].double()  # DeepSeek's router computes in float32
        ours = x @ torch.from_numpy(w["router"]).T + torch.from_numpy(w["router_bias"])
        torch.testing.assert_close(ours, logits, rtol=1e-5, atol=1e-6)
        if routing_.shared_ffn:
            shared = slice(routing_.experts * f, None)
            ours = (torch.nn.functional.silu(x @ gate[shared].T) * (x @ up[shared].T)) @ down[:, shared].T
            torch.testing.assert_close(ours, mlp.shared_experts(x), rtol=1e-10, atol=1e-12)
