"""Function-preserving re-parametrisations of a LLaMA-architecture `transformers` model.

Each transform changes the weights but not the function the network computes (logits agree
to floating-point rounding), which is what a model thief can do for free to disguise a stolen
checkpoint. HuRef's invariant terms are built to survive exactly these, so the fingerprint of
every derived model must equal its parent's.

Conventions (Hugging Face LLaMA, also Mistral and Qwen2):

* `nn.Linear` weights are (out_features, in_features); q_proj rows are query heads of `head_dim`
  rows each, k_proj/v_proj rows are key/value heads, o_proj columns are query heads.
* Grouped-query attention: key/value head `j` serves the `group = heads // kv_heads` consecutive
  query heads `j*group ... (j+1)*group - 1` (`repeat_kv`).
* RoPE with `rotate_half`: inside a head, dims `i` and `i + head_dim/2` form one rotation plane,
  turned by the angle `position * freq_i`.

What RoPE allows. Attention scores are `q_m · k_n = (R_m q)·(R_n k)` with `R_m` the block rotation
at position m. A linear map A of the Q/K head space (q -> A q, k -> A^{-T} k) preserves every
score only if it commutes with all `R_m`: with distinct frequencies per plane, A must be block
diagonal over the RoPE planes, each 2x2 block a scaled rotation (a complex number). Hence
`scale_qk` and `rotate_qk` below, and hence what is *not* available under RoPE: a general
orthogonal rotation of the Q/K head space, or a permutation of Q/K units inside a head (the
rotary frequencies are tied to positions within the head). The V/O inner space carries no
RoPE, so any invertible map works there (`permute_value_units`, `rotate_value_space`).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------
# Shapes and low-level weight surgery (all arithmetic in float64, cast back to the weight dtype)


@dataclass(frozen=True)
class AttentionShape:
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    def kv_of(self, query_head: int) -> int:
        """The key/value head a query head reads (transformers' `repeat_kv` ordering)."""
        return query_head // self.group


def attention_shape(model: nn.Module) -> AttentionShape:
    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if heads % kv_heads:
        raise ValueError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    return AttentionShape(heads, kv_heads, head_dim)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a *ForCausalLM (or bare) LLaMA-architecture model."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no .model.layers: not a LLaMA-architecture model")
    for layer in layers:
        attn = layer.self_attn
        for module in (getattr(attn, name, None) for name in ("q_proj", "k_proj", "v_proj", "o_proj")):
            if not isinstance(module, nn.Linear):
                raise ValueError(f"expected nn.Linear projections, found {type(module).__name__}")
    return layers


def dense_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks, each with a dense gated FFN (gate_proj, up_proj, down_proj): not a mixture of experts."""
    layers = decoder_layers(model)
    for layer in layers:
        mlp = layer.mlp
        for module in (getattr(mlp, name, None) for name in ("gate_proj", "up_proj", "down_proj")):
            if not isinstance(module, nn.Linear):
                raise ValueError(f"expected a dense gated FFN of nn.Linear, found {type(module).__name__}")
    return layers


def _require_plain_rope(model: nn.Module) -> None:
    """The Q/K transforms assume full-width `rotate_half` RoPE and no per-head q/k norm."""
    config = model.config
    factors = [getattr(config, "partial_rotary_factor", None)]
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict):
        factors.append(rope.get("partial_rotary_factor"))
    if any(f is not None and f != 1.0 for f in factors):
        raise ValueError("partial rotary embeddings are not supported by the Q/K transforms")
    if attention_shape(model).head_dim % 2:
        raise ValueError("RoPE needs an even head_dim")
    for layer in decoder_layers(model):
        if getattr(layer.self_attn, "q_norm", None) is not None or getattr(layer.self_attn, "k_norm", None) is not None:
            raise ValueError("per-head q/k norms (Qwen3, OLMo2) break the Q/K transforms")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@torch.no_grad()
def _store(param: torch.Tensor, value: torch.Tensor) -> None:
    param.copy_(value.to(dtype=param.dtype, device=param.device))


@torch.no_grad()
def _permute_rows(linear: nn.Linear, index: torch.Tensor) -> None:
    """new row r = old row index[r] (bias likewise)."""
    _store(linear.weight, linear.weight.index_select(0, index.to(linear.weight.device)))
    if linear.bias is not None:
        _store(linear.bias, linear.bias.index_select(0, index.to(linear.bias.device)))


@torch.no_grad()
def _permute_cols(linear: nn.Linear, index: torch.Tensor) -> None:
    """new column c = old column index[c]."""
    _store(linear.weight, linear.weight.index_select(1, index.to(linear.weight.device)))


@torch.no_grad()
def _scale_rows(linear: nn.Linear, factors: torch.Tensor) -> None:
    w = linear.weight.double()
    _store(linear.weight, w * factors.to(w.device)[:, None])
    if linear.bias is not None:
        _store(linear.bias, linear.bias.double() * factors.to(w.device))


@torch.no_grad()
def _scale_cols(linear: nn.Linear, factors: torch.Tensor) -> None:
    w = linear.weight.double()
    _store(linear.weight, w * factors.to(w.device)[None, :])


@torch.no_grad()
def _map_head_rows(linear: nn.Linear, mats: torch.Tensor) -> None:
    """Rows come in len(mats) heads of d rows: head h's rows (and bias) become mats[h] @ rows."""
    count, d, _ = mats.shape
    w = linear.weight.double().reshape(count, d, -1)
    mats = mats.to(w.device)
    _store(linear.weight, torch.einsum("hij,hjk->hik", mats, w).reshape(linear.weight.shape))
    if linear.bias is not None:
        b = linear.bias.double().reshape(count, d)
        _store(linear.bias, torch.einsum("hij,hj->hi", mats, b).reshape(linear.bias.shape))


@torch.no_grad()
def _map_head_cols(linear: nn.Linear, mats: torch.Tensor) -> None:
    """Columns come in len(mats) heads of d columns: head h's columns become cols @ mats[h]."""
    count, d, _ = mats.shape
    w = linear.weight.double().reshape(linear.weight.shape[0], count, d)
    _store(linear.weight, torch.einsum("ohj,hjk->ohk", w, mats.to(w.device)).reshape(linear.weight.shape))


def _map_qk(layer: nn.Module, shape: AttentionShape, q_mats: torch.Tensor, k_mats: torch.Tensor) -> None:
    """q -> A_j q for every query head of group j, k_j -> B_j k_j; scores keep if A_jᵀ B_j = I."""
    _map_head_rows(layer.self_attn.q_proj, q_mats.repeat_interleave(shape.group, dim=0))
    _map_head_rows(layer.self_attn.k_proj, k_mats)


def _map_vo(layer: nn.Module, shape: AttentionShape, v_mats: torch.Tensor, o_mats: torch.Tensor) -> None:
    """v_j -> M_j v_j; o columns of every query head in group j -> o M_j^{-1} (o_mats[j] = M_j^{-1})."""
    _map_head_rows(layer.self_attn.v_proj, v_mats)
    _map_head_cols(layer.self_attn.o_proj, o_mats.repeat_interleave(shape.group, dim=0))


def _rope_plane_blocks(shape: AttentionShape, diag: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """(kv_heads, head_dim, head_dim) matrices acting on each RoPE plane (i, i + head_dim/2) as
    [[diag, -off], [off, diag]]: a scaled rotation, which commutes with RoPE's rotation there."""
    half = shape.head_dim // 2
    mats = torch.zeros(shape.kv_heads, shape.head_dim, shape.head_dim, dtype=torch.float64)
    i = torch.arange(half)
    mats[:, i, i] = diag
    mats[:, i + half, i + half] = diag
    mats[:, i, i + half] = -off
    mats[:, i + half, i] = off
    return mats


# ---------------------------------------------------------------------------------------------
# The re-parametrisations


def permute_value_units(model: nn.Module, seed: int) -> nn.Module:
    """Permute the head_dim units of each key/value head's V/O inner space.

    Why the function is unchanged: a head's output is o_h · softmax(...) · V_{kv(h)}, linear in the
    value vector and with no RoPE on V; permuting the rows of v_proj inside kv head j and the same
    columns of o_proj for every query head that reads kv head j only reorders the terms of
    o_h · v. HuRef's VO term (Wvᵀ·Woᵀ) is the same sum reordered.
    """
    model = copy.deepcopy(model)
    shape, g = attention_shape(model), _generator(seed)
    hd = shape.head_dim
    for layer in decoder_layers(model):
        perms = [torch.randperm(hd, generator=g) for _ in range(shape.kv_heads)]
        v_index = torch.cat([j * hd + perms[j] for j in range(shape.kv_heads)])
        o_index = torch.cat([h * hd + perms[shape.kv_of(h)] for h in range(shape.heads)])
        _permute_rows(layer.self_attn.v_proj, v_index)
        _permute_cols(layer.self_attn.o_proj, o_index)
    return model


def permute_heads(model: nn.Module, seed: int) -> nn.Module:
    """Permute the key/value groups of each layer, and the query heads inside each group.

    Why the function is unchanged: attention heads are independent and their outputs are summed
    by o_proj. A whole group (kv head j with its query heads) moves to slot g^{-1}(j): its k/v rows,
    its query heads' q rows and o_proj columns move together, so each query head still reads its
    own kv head. Query heads inside a group share that kv head, so they may also be reordered.
    HuRef's QK and VO terms sum over heads, which is order-free.
    """
    model = copy.deepcopy(model)
    shape, g = attention_shape(model), _generator(seed)
    hd, group = shape.head_dim, shape.group
    for layer in decoder_layers(model):
        kv_order = torch.randperm(shape.kv_heads, generator=g)  # new kv head j = old kv head kv_order[j]
        q_order = torch.cat(
            [kv_order[j] * group + torch.randperm(group, generator=g) for j in range(shape.kv_heads)]
        )  # new query head h = old query head q_order[h]; new h // group reads new kv h // group = old kv_order[...]
        kv_rows = (kv_order[:, None] * hd + torch.arange(hd)).reshape(-1)
        q_rows = (q_order[:, None] * hd + torch.arange(hd)).reshape(-1)
        attn = layer.self_attn
        _permute_rows(attn.q_proj, q_rows)
        _permute_rows(attn.k_proj, kv_rows)
        _permute_rows(attn.v_proj, kv_rows)
        _permute_cols(attn.o_proj, q_rows)
        _permute_head_extras(attn, q_order, q_rows, kv_rows)
    return model


@torch.no_grad()
def _permute_head_extras(attn: nn.Module, q_order: torch.Tensor, q_rows: torch.Tensor, kv_rows: torch.Tensor) -> None:
    """Per-head parameters besides the projections move with their heads: gpt-oss's attention sinks (one logit
    per query head) and q/k norms over the whole projection (OLMo 2's, one scale per q or k row). Norms over one
    head's dims (Qwen3's) are shared by every head and stay."""
    sinks = getattr(attn, "sinks", None)
    if sinks is not None:
        _store(sinks, sinks.index_select(0, q_order))
    for name, rows in (("q_norm", q_rows), ("k_norm", kv_rows)):
        norm = getattr(attn, name, None)
        if norm is not None and norm.weight.numel() == len(rows):
            _store(norm.weight, norm.weight.index_select(0, rows))


def permute_ffn_neurons(model: nn.Module, seed: int) -> nn.Module:
    """Permute the intermediate neurons of each gated FFN.

    Why the function is unchanged: down(silu(gate x) ⊙ up x) is a sum over neurons, each neuron
    being one row of gate_proj, one row of up_proj and one column of down_proj; moving all three
    together reorders that sum. HuRef's FFN term (gate ⊙ up)ᵀ·downᵀ is the same sum.
    """
    model = copy.deepcopy(model)
    g = _generator(seed)
    for layer in dense_layers(model):
        mlp = layer.mlp
        perm = torch.randperm(mlp.up_proj.out_features, generator=g)
        _permute_rows(mlp.gate_proj, perm)
        _permute_rows(mlp.up_proj, perm)
        _permute_cols(mlp.down_proj, perm)
    return model


def scale_qk(model: nn.Module, seed: int) -> nn.Module:
    """Scale each RoPE plane of the Q/K space: q rows (i, i+hd/2) × α, the k rows × 1/α.

    Why the function is unchanged: RoPE rotates the plane (i, i+hd/2) of q and of k; a scalar α on
    that plane commutes with the rotation, and the plane's contribution to the score
    (α R_m q)·(α^{-1} R_n k) equals (R_m q)·(R_n k). α is drawn per kv head and shared by all query
    heads of the group, since they all meet the same k. HuRef's QK term Wqᵀ·Wk is unchanged too.
    """
    model = copy.deepcopy(model)
    _require_plain_rope(model)
    shape, g = attention_shape(model), _generator(seed)
    half = shape.head_dim // 2
    for layer in decoder_layers(model):
        alpha = torch.exp(torch.rand(shape.kv_heads, half, generator=g, dtype=torch.float64) * 2 - 1)
        zero = torch.zeros_like(alpha)
        _map_qk(layer, shape, _rope_plane_blocks(shape, alpha, zero), _rope_plane_blocks(shape, 1 / alpha, zero))
    return model


def rotate_qk(model: nn.Module, seed: int) -> nn.Module:
    """Rotate each RoPE plane of the Q/K space by a random angle, the same for q and k.

    Why the function is unchanged: rotations of one plane commute, so the fixed rotation Q commutes
    with RoPE's rotation at any position, and (R_m Q q)·(R_n Q k) = (R_m q)·Qᵀ Q·(R_n k) =
    (R_m q)·(R_n k). Q is drawn per kv head and applied to every query head of its group. HuRef's
    QK term Wqᵀ·Qᵀ·Q·Wk is unchanged too.
    """
    model = copy.deepcopy(model)
    _require_plain_rope(model)
    shape, g = attention_shape(model), _generator(seed)
    half = shape.head_dim // 2
    for layer in decoder_layers(model):
        theta = torch.rand(shape.kv_heads, half, generator=g, dtype=torch.float64) * (2 * math.pi)
        rotation = _rope_plane_blocks(shape, torch.cos(theta), torch.sin(theta))
        _map_qk(layer, shape, rotation, rotation)  # orthogonal: R^{-T} = R
    return model


def _random_orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    """Haar-random orthogonal matrix: QR of a Gaussian, with the signs of R's diagonal folded into Q."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def rotate_value_space(model: nn.Module, seed: int) -> nn.Module:
    """Rotate each key/value head's V/O inner space by a random orthogonal matrix R.

    Why the function is unchanged: v' = R v and o' = o Rᵀ give o'·v' = o Rᵀ R v = o v; attention
    weights only mix value vectors linearly across positions, which commutes with R, and V carries
    no RoPE. R is drawn per kv head and applied to the o_proj columns of every query head reading
    it. HuRef's VO term Wvᵀ·Rᵀ·R·Woᵀ is unchanged.
    """
    model = copy.deepcopy(model)
    shape, g = attention_shape(model), _generator(seed)
    for layer in decoder_layers(model):
        rotations = torch.stack([_random_orthogonal(shape.head_dim, g) for _ in range(shape.kv_heads)])
        _map_vo(layer, shape, rotations, rotations.transpose(1, 2))
    return model


def scale_ffn_up(model: nn.Module, seed: int) -> nn.Module:
    """Scale each FFN neuron's up_proj row by α_i and its down_proj column by 1/α_i.

    Why the function is unchanged: neuron i outputs silu(gate_i·x) · (up_i·x), linear in up_i, and
    is read only by column i of down_proj, so α_i cancels. (gate_proj cannot be rescaled: SiLU is
    not homogeneous.) HuRef's FFN term (gate ⊙ up)ᵀ·downᵀ is unchanged.
    """
    model = copy.deepcopy(model)
    g = _generator(seed)
    for layer in dense_layers(model):
        mlp = layer.mlp
        alpha = torch.exp(torch.rand(mlp.up_proj.out_features, generator=g, dtype=torch.float64) * 2 - 1)
        _scale_rows(mlp.up_proj, alpha)
        _scale_cols(mlp.down_proj, 1 / alpha)
    return model


REPARAMETRISATIONS: dict[str, Callable[[nn.Module, int], nn.Module]] = {
    "permute_value_units": permute_value_units,
    "permute_heads": permute_heads,
    "permute_ffn_neurons": permute_ffn_neurons,
    "scale_qk": scale_qk,
    "rotate_qk": rotate_qk,
    "rotate_value_space": rotate_value_space,
    "scale_ffn_up": scale_ffn_up,
}


# ---------------------------------------------------------------------------------------------
# Vocabulary permutation (folder to folder: the tokenizer moves with the rows)

SPECIAL_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "decoder_start_token_id")
COPIED_FILES = ("special_tokens_map.json", "chat_template.jinja", "chat_template.json")


def _remap_id(value, new_id_of: list[int]):
    """An int id, a list of ids or None, mapped through the permutation."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return new_id_of[value]
    if isinstance(value, list):
        return [_remap_id(v, new_id_of) for v in value]
    return value


def _remap_post_processor(node, new_id_of: list[int]):
    """tokenizers post-processors that carry ids: TemplateProcessing special_tokens, Bert/Roberta
    (string, id) pairs, and Sequence of those."""
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind == "Sequence":
        node["processors"] = [_remap_post_processor(p, new_id_of) for p in node.get("processors", [])]
    elif kind == "TemplateProcessing":
        for special in node.get("special_tokens", {}).values():
            special["ids"] = [new_id_of[i] for i in special.get("ids", [])]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if key in node:
                node[key] = [node[key][0], new_id_of[node[key][1]]]
    return node


def permute_tokenizer_json(data: dict, new_id_of: list[int]) -> dict:
    """tokenizer.json with every id replaced by new_id_of[id]: model vocab, added tokens, padding
    and post-processor ids. Dict vocabularies only (WordLevel, BPE, WordPiece); a Unigram vocab
    is a list whose positions are the ids and cannot take arbitrary ids."""
    data = copy.deepcopy(data)
    model = data.get("model") or {}
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ValueError(f"tokenizer model {model.get('type')!r} has no token->id vocab dict; cannot permute ids")
    model["vocab"] = {token: new_id_of[i] for token, i in vocab.items()}
    for added in data.get("added_tokens") or []:
        added["id"] = new_id_of[added["id"]]
    if isinstance(data.get("padding"), dict) and isinstance(data["padding"].get("pad_id"), int):
        data["padding"]["pad_id"] = new_id_of[data["padding"]["pad_id"]]
    data["post_processor"] = _remap_post_processor(data.get("post_processor"), new_id_of)
    return data


def _source_tokenizer(src_dir: Path, dst_dir: Path) -> dict:
    """The source's tokenizer.json, read before any work: without it there are no ids to permute."""
    if src_dir.resolve() == dst_dir.resolve():
        raise ValueError("permute_vocabulary writes a new folder; src_dir and dst_dir are the same")
    tokenizer_path = src_dir / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise FileNotFoundError(f"{tokenizer_path} is needed: it is the tokenizer whose ids are permuted")
    return json.loads(tokenizer_path.read_text())


@torch.no_grad()
def _move_embedding_rows(inp: nn.Module, out: nn.Module | None, old_of_new: torch.Tensor) -> None:
    """New row r of embed_tokens and lm_head (weight, bias) is old row old_of_new[r]; a tied matrix moves once."""
    rows = inp.weight.shape[0]
    tied = out is not None and out.weight is inp.weight
    _store(inp.weight, inp.weight.index_select(0, old_of_new))
    if out is not None and not tied:
        if out.weight.shape[0] != rows:
            raise ValueError(f"lm_head has {out.weight.shape[0]} rows, embed_tokens {rows}")
        _store(out.weight, out.weight.index_select(0, old_of_new))
    if out is not None and getattr(out, "bias", None) is not None:
        _store(out.bias, out.bias.index_select(0, old_of_new))


def _remap_config_ids(model: nn.Module, ids: list[int]) -> None:
    """bos/eos/pad/unk ids in config.json and generation_config.json must name the same tokens after the shuffle."""
    for holder in (model.config, getattr(model, "generation_config", None)):
        for name in SPECIAL_ID_FIELDS:
            if holder is not None and getattr(holder, name, None) is not None:
                setattr(holder, name, _remap_id(getattr(holder, name), ids))


def _write_tokenizer_config(src_dir: Path, dst_dir: Path, ids: list[int]) -> None:
    """tokenizer_config.json, if any, with its added_tokens_decoder keys and special ids remapped."""
    config_path = src_dir / "tokenizer_config.json"
    if not config_path.is_file():
        return
    tok_config = json.loads(config_path.read_text())
    decoder = tok_config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        tok_config["added_tokens_decoder"] = {str(ids[int(k)]): v for k, v in decoder.items()}
    for name in SPECIAL_ID_FIELDS:
        if isinstance(tok_config.get(name), int):
            tok_config[name] = ids[tok_config[name]]
    (dst_dir / "tokenizer_config.json").write_text(json.dumps(tok_config, ensure_ascii=False, indent=2) + "\n")


def _copy_id_free_files(src_dir: Path, dst_dir: Path) -> None:
    """Files that hold token strings, not ids, are valid as they are."""
    for name in COPIED_FILES:
        if (src_dir / name).is_file():
            shutil.copyfile(src_dir / name, dst_dir / name)


@torch.no_grad()
def permute_vocabulary(src_dir: Path, dst_dir: Path, seed: int) -> torch.Tensor:
    """Write to `dst_dir` the model in `src_dir` with its vocabulary ids shuffled; return new_id_of[old_id].

    Why the function is unchanged: a token id only selects a row of embed_tokens and names a row of
    lm_head. Moving the row of every token to its new id in both matrices (once when they are tied),
    and giving every token string its new id in the tokenizer, makes text -> logits-per-string
    identical: row new_id_of[t] of the new model is row t of the old. HuRef picks its tokens by
    string, so it reads the same embedding rows and gets the same invariants.

    Rewritten: model.safetensors (rows moved), tokenizer.json (vocab, added tokens, padding and
    post-processor ids), tokenizer_config.json (added_tokens_decoder keys), config.json and
    generation_config.json (bos/eos/pad/unk ids). special_tokens_map.json and chat templates hold
    strings and are copied. Id-bearing legacy files (tokenizer.model, vocab.txt, vocab.json,
    added_tokens.json, merges.txt) are not copied: tokenizer.json is then the only tokenizer.
    """
    from transformers import AutoModelForCausalLM

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    tokenizer = _source_tokenizer(src_dir, dst_dir)

    model = AutoModelForCausalLM.from_pretrained(str(src_dir), dtype="auto", local_files_only=True)
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    new_id_of = torch.randperm(inp.weight.shape[0], generator=_generator(seed))
    old_of_new = torch.argsort(new_id_of)  # new row r holds old row old_of_new[r]
    ids = new_id_of.tolist()

    tokenizer = permute_tokenizer_json(tokenizer, ids)  # validates before anything is written
    _move_embedding_rows(inp, out, old_of_new)
    _remap_config_ids(model, ids)

    dst_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst_dir), safe_serialization=True)
    (dst_dir / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, indent=2))
    _write_tokenizer_config(src_dir, dst_dir, ids)
    _copy_id_free_files(src_dir, dst_dir)
    return new_id_of


# ---------------------------------------------------------------------------------------------
# Checking


@torch.no_grad()
def max_logit_change(
    a: nn.Module,
    b: nn.Module,
    input_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    vocab_map: torch.Tensor | Sequence[int] | None = None,
) -> float:
    """max |logits_a - logits_b| over positions and vocabulary, on `input_ids` (1-D or batched).

    With `vocab_map` (new_id_of[old_id], as `permute_vocabulary` returns), `b` is fed the mapped
    ids and its logit for old token t is read at column vocab_map[t].
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    device_a = next(a.parameters()).device
    device_b = next(b.parameters()).device
    logits_a = a(input_ids=ids.to(device_a), use_cache=False).logits.double().cpu()
    if vocab_map is None:
        logits_b = b(input_ids=ids.to(device_b), use_cache=False).logits.double().cpu()
    else:
        mapping = torch.as_tensor(vocab_map, dtype=torch.long)
        logits_b = b(input_ids=mapping[ids].to(device_b), use_cache=False).logits.double().cpu()[..., mapping]
    return float((logits_a - logits_b).abs().max())
