"""Lineage through `noseprint compare --json` for issue 35's eight families, in the form of the acceptance check.

For each family: a tiny random checkpoint built from its transformers 5 config (norm scales random, as trained
ones are: `with_trained_norms`), a 2 % fine-tune of it (every weight moved by 2 % of its tensor's standard
deviation, seeded noise), an independently seeded model, and for mixtures of experts a copy whose experts are
permuted with the router's rows (logits checked unchanged). compare must call the fine-tune and the permuted
copy "same base model" and the independent model "unrelated"; the permuted copy's ICS must be at least 0.99.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from noseprint.lineage.verdict import SAME, UNRELATED
from transformers import AutoConfig, AutoModelForCausalLM

from tests.conftest import run_cli, save_tiny, with_trained_norms

TINY = dict(vocab_size=303, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip
EXPERTS = dict(num_local_experts=4, num_experts_per_tok=2)
FAMILIES = {
    "qwen3": {},
    "gemma3_text": {},
    "olmo2": {},
    "smollm3": {},
    "mixtral": EXPERTS,
    "qwen3_moe": dict(EXPERTS, moe_intermediate_size=8),
    "gpt_oss": EXPERTS,
    "deepseek_v3": dict(EXPERTS, moe_intermediate_size=8, num_key_value_heads=4, first_k_dense_replace=1, n_group=2,
                        topk_group=1, q_lora_rank=8, kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4,
                        v_head_dim=6, n_shared_experts=1),
}  # fmt: skip
FINE_TUNE = 0.02
PERMUTED_ICS = 0.99
INPUT_IDS = torch.randint(0, TINY["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(1))


def build(model_type: str, seed: int):
    config = AutoConfig.for_model(model_type, **{**TINY, **FAMILIES[model_type]})
    torch.manual_seed(seed)
    return with_trained_norms(AutoModelForCausalLM.from_config(config).eval(), seed)


@torch.no_grad()
def fine_tuned(model, seed: int = 7):
    """Every weight moved by FINE_TUNE of its tensor's standard deviation (seeded Gaussian noise)."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        if parameter.numel() > 1:
            parameter.add_(FINE_TUNE * parameter.std() * torch.randn(parameter.shape, generator=g))
    return model


@torch.no_grad()
def experts_permuted(model, seed: int = 3):
    """Each MoE layer's experts permuted with the router's rows (weight, bias, DeepSeek's score-correction bias);
    DeepSeek routes to groups of experts first, so its groups move whole and its experts within a group."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    groups = getattr(model.config, "n_group", None) or 1
    for layer in model.model.layers:
        mlp = layer.mlp
        if not hasattr(mlp, "experts"):
            continue
        count = mlp.experts.gate_up_proj.shape[0]
        size = count // groups
        order = torch.cat(
            [old * size + torch.randperm(size, generator=g) for old in torch.randperm(groups, generator=g)]
        )
        router = mlp.router if hasattr(mlp, "router") else mlp.gate
        for tensor in [*mlp.experts.parameters(), *router.parameters(), *router.buffers()]:
            if tensor.dim() >= 1 and tensor.shape[0] == count:
                tensor.copy_(tensor.index_select(0, order))
    return model


@torch.no_grad()
def relative_logit_change(a, b) -> float:
    reference = a(input_ids=INPUT_IDS).logits
    return float((reference - b(input_ids=INPUT_IDS).logits).abs().max() / reference.abs().max())


def compare(a: Path, b: Path, home: Path) -> dict:
    result = run_cli("compare", str(a), str(b), "--json", "--image", str(b.with_suffix(".png")), home=home)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_fine_tunes_are_the_same_base_model_and_independent_seeds_unrelated(tmp_path, model_type):
    base = build(model_type, seed=0)
    folders = {
        "base": save_tiny(base, tmp_path / "base"),
        "fine-tune": save_tiny(fine_tuned(base), tmp_path / "fine-tune"),
        "independent": save_tiny(build(model_type, seed=1), tmp_path / "independent"),
    }
    if hasattr(base.model.layers[-1].mlp, "experts"):
        permuted = experts_permuted(base)
        assert relative_logit_change(base, permuted) <= 1e-5
        folders["permuted"] = save_tiny(permuted, tmp_path / "permuted")
    results = {name: compare(folders["base"], folder, tmp_path / "home") for name, folder in folders.items()
               if name != "base"}  # fmt: skip
    table = {name: (round(r["z_cosine"], 3), round(r["ics"], 4), r["verdict"]) for name, r in results.items()}
    assert results["fine-tune"]["verdict"] == SAME, table
    assert results["independent"]["verdict"] == UNRELATED, table
    if "permuted" in results:
        assert results["permuted"]["verdict"] == SAME and results["permuted"]["ics"] >= PERMUTED_ICS, table
