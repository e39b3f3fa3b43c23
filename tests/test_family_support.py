"""What each family of issue 35 supports besides the fingerprint: the listing, `plan` on the real models' configs,
`prove`'s refusal of mixtures of experts, challenge inference's refusal, and the refusal of families whose last
layers are not attention. Nothing here proves or runs EZKL keys; `plan` on a tiny config counts chunk rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuits.budget import estimated_chunk_rows
from circuits.calibration import load_calibration
from core.chunks import DEFAULT_CHUNK_WEIGHTS, choose_chunking, plan_chunks
from core.errors import UsageError
from core.layout import LayerShape
from models.architectures import NOT_ATTENTION, adapter_for
from models.full_model import inference_shape
from models.weights import proof_gap, read_layout
from prover.estimate import estimate
from tests.conftest import TOKENS, run_cli, save_tiny
from tests.test_lineage_families import FAMILIES, build

MOE = ("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3")
PROVABLE = ("qwen3", "gemma3_text", "olmo2", "smollm3")

REAL: dict[str, tuple[dict, LayerShape]] = {
    "Qwen3-8B": (
        dict(model_type="qwen3", hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
             num_key_value_heads=8, head_dim=128, intermediate_size=12288, vocab_size=151936),
        LayerShape(4096, 32, 8, 128, 12288, True),
    ),
    "Qwen3-30B-A3B": (
        dict(model_type="qwen3_moe", hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
             num_key_value_heads=4, head_dim=128, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
             num_experts_per_tok=8, decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
             vocab_size=151936),
        LayerShape(2048, 32, 4, 128, 128 * 768, True),
    ),
    "Qwen3-235B-A22B": (
        dict(model_type="qwen3_moe", hidden_size=4096, num_hidden_layers=94, num_attention_heads=64,
             num_key_value_heads=4, head_dim=128, intermediate_size=12288, moe_intermediate_size=1536,
             num_experts=128, num_experts_per_tok=8, decoder_sparse_step=1, mlp_only_layers=[], vocab_size=151936),
        LayerShape(4096, 64, 4, 128, 128 * 1536, True),
    ),
    "gpt-oss-120b": (
        dict(model_type="gpt_oss", hidden_size=2880, num_hidden_layers=36, num_attention_heads=64,
             num_key_value_heads=8, head_dim=64, intermediate_size=2880, num_local_experts=128,
             num_experts_per_tok=4, sliding_window=128, vocab_size=201088,
             layer_types=["sliding_attention", "full_attention"] * 18),
        LayerShape(2880, 64, 8, 64, 128 * 2880, True),
    ),
    "DeepSeek-V3": (
        dict(model_type="deepseek_v3", hidden_size=7168, num_hidden_layers=61, num_attention_heads=128,
             num_key_value_heads=128, intermediate_size=18432, moe_intermediate_size=2048, n_routed_experts=256,
             n_shared_experts=1, num_experts_per_tok=8, first_k_dense_replace=3, q_lora_rank=1536,
             kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, n_group=8, topk_group=4,
             routed_scaling_factor=2.5, scoring_func="sigmoid", vocab_size=129280),
        LayerShape(7168, 128, 128, 192, 256 * 2048 + 2048, True),
    ),
    "Gemma-3-27B": (
        dict(model_type="gemma3", text_config=dict(model_type="gemma3_text", hidden_size=5376, num_hidden_layers=62,
             num_attention_heads=32, num_key_value_heads=16, head_dim=128, intermediate_size=21504,
             query_pre_attn_scalar=168, sliding_window=1024, vocab_size=262208)),
        LayerShape(5376, 32, 16, 128, 21504, True),
    ),
}  # fmt: skip
"""The real models' config.json fields the adapters read (their published configs), and the fingerprinted layers'
shape each must give: a MoE layer's FFN is its experts stacked (DeepSeek-V3's shared expert too); DeepSeek's
latent heads are [nope 128 | rope 64] wide, its 128-wide value heads padded to 192."""


def config_folder(root: Path, name: str, config: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("name", REAL)
def test_the_real_models_configs_give_their_shapes_and_a_chunk_plan(tmp_path, name):
    config, expected = REAL[name]
    layout = read_layout(config_folder(tmp_path, name, config), 16)
    assert layout.layers == (expected, expected)
    chunking = choose_chunking(layout, DEFAULT_CHUNK_WEIGHTS)
    chunks = plan_chunks(layout, chunking)
    plan = estimate(layout, chunking, 1, 16, load_calibration(), rows_of=estimated_chunk_rows)
    assert plan.chunks == len(chunks) > 0 and plan.weights == layout.weight_count and plan.core_hours > 0
    moe = config["model_type"] in MOE
    assert (proof_gap(tmp_path / name) is not None) == moe


def test_architectures_lists_the_families_and_their_proofs(tmp_path):
    listed = json.loads(run_cli("architectures", "--json", home=tmp_path, check=True).stdout)
    types = {t for family in listed.values() for t in family}
    assert set(FAMILIES) | {"gemma3"} <= types
    text = run_cli("architectures", home=tmp_path, check=True).stdout
    lines = {line.split(":")[0]: line for line in text.splitlines() if ":" in line}
    for family in MOE:
        assert "fingerprint and compare" in lines[family] and "chunked proof" not in lines[family]
    for family in ("qwen3", "gemma3", "olmo2"):
        assert "chunked proof" in lines[family] and "challenge inference" not in lines[family]
    assert "smollm3" in lines["llama"]


@pytest.mark.parametrize("model_type", PROVABLE)
def test_plan_accepts_the_qk_norm_and_smollm3_configs(tmp_path, model_type):
    """Their terms are the chunk circuits' products once the adapter has folded the q/k norms."""
    folder = config_folder(tmp_path, model_type, build(model_type, 0).config.to_dict())
    result = run_cli("plan", str(folder), "--n-tokens", TOKENS, "--json", home=tmp_path / "home", check=True)
    plan = json.loads(result.stdout)
    assert plan["chunks"] > 0 and not any("refuses" in w for w in plan["warnings"])


def test_plan_costs_a_mixture_of_experts_and_says_prove_refuses_it(tmp_path):
    folder = save_tiny(build("mixtral", 0), tmp_path / "mixtral")
    planned = run_cli("plan", str(folder), "--n-tokens", TOKENS, "--json", home=tmp_path / "home", check=True)
    assert any("`prove` refuses mixtral" in w for w in json.loads(planned.stdout)["warnings"])
    proved = run_cli("prove", str(folder), "--out", str(tmp_path / "bundle"), "--n-tokens", TOKENS, "--json",
                     home=tmp_path / "home")  # fmt: skip
    assert proved.returncode == 2 and not (tmp_path / "bundle").exists()
    message = " ".join(proved.stderr.split())
    assert "cannot prove mixtral: the chunked proof does not implement a mixture-of-experts FFN" in message


@pytest.mark.parametrize("model_type", [*FAMILIES, "gemma3"])
def test_challenge_inference_names_what_its_circuits_lack(model_type):
    with pytest.raises(UsageError, match=f"this is '{model_type}': the inference circuits would need"):
        inference_shape({"model_type": model_type, "hidden_size": 16})


@pytest.mark.parametrize("model_type", sorted(NOT_ATTENTION))
def test_families_whose_last_layers_are_not_attention_are_refused_by_name(tmp_path, model_type):
    with pytest.raises(UsageError, match="Reading it would need") as refused:
        adapter_for({"model_type": model_type})
    assert "not supported" in str(refused.value)
    folder = config_folder(tmp_path, model_type, {"model_type": model_type, "num_hidden_layers": 4})
    planned = run_cli("plan", str(folder), "--json", home=tmp_path / "home")
    message = " ".join(planned.stderr.split())
    assert planned.returncode == 2 and "is not supported: the fingerprint reads its last two layers" in message
