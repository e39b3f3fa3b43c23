"""What each family of issue 35 supports besides the fingerprint: the listing, `plan` on the real models' configs,
`prove`'s refusal of mixtures of experts, challenge inference's refusal, and the refusal of families whose last
layers are not attention. Nothing here proves or runs EZKL keys; `plan` on a tiny config counts chunk rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from noseprint.circuits.budget import estimated_chunk_rows
from noseprint.circuits.calibration import load_calibration
from noseprint.core.chunks import DEFAULT_CHUNK_WEIGHTS, Chunking, choose_chunking, plan_chunks
from noseprint.core.errors import UsageError
from noseprint.core.layout import LayerShape
from noseprint.models.architectures import NOT_ATTENTION, adapter_for
from noseprint.models.full_model import inference_shape
from noseprint.models.weights import proof_gap, read_layout
from noseprint.prover.estimate import estimate

from bench.plan_shapes import ISSUE35
from tests.conftest import TOKENS, run_cli, save_tiny
from tests.test_lineage_families import FAMILIES, build

MOE = ("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3")
TINY_FFN = 32
PROVABLE = ("qwen3", "gemma3_text", "olmo2", "smollm3")

REAL: dict[str, LayerShape] = {
    "Qwen3-8B": LayerShape(4096, 32, 8, 128, 12288, True),
    "Qwen3-30B-A3B": LayerShape(2048, 32, 4, 128, 128 * 768, True),
    "Qwen3-235B-A22B": LayerShape(4096, 64, 4, 128, 128 * 1536, True),
    "gpt-oss-120b": LayerShape(2880, 64, 8, 64, 128 * 2880, True),
    "DeepSeek-V3": LayerShape(7168, 128, 128, 192, 256 * 2048 + 2048, True),
    "Gemma-3-27B": LayerShape(5376, 32, 16, 128, 21504, True),
}
"""The fingerprinted layers' shape each real model's config (`bench.plan_shapes.ISSUE35`) must give: a MoE layer's
FFN is its experts stacked (DeepSeek-V3's shared expert too); DeepSeek's latent heads are [nope 128 | rope 64] wide,
its 128-wide value heads padded to 192."""


def config_folder(root: Path, name: str, config: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("name", REAL)
def test_the_real_models_configs_give_their_shapes_and_a_chunk_plan(tmp_path, name):
    config, expected = ISSUE35[name], REAL[name]
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


ATTENTION_PATTERN = {
    "gemma3_text": dict(sliding_window=2, layer_types=["full_attention"] * 3, rope_local_base_freq=50.0),
    "gpt_oss": dict(sliding_window=2, layer_types=["full_attention"] * 3),
    "smollm3": dict(no_rope_layers=[0, 0, 0]),
}
"""What each family's attention pattern is made of, changed: window sizes, which layers are local or global, the
local rotary base, which layers skip the rotary embedding. The build's own: Gemma 3 and gpt-oss local layers with
windows of 4, SmolLM3 with RoPE in all three layers (its default: every fourth layer without)."""


@pytest.mark.parametrize("model_type", sorted(ATTENTION_PATTERN))
def test_the_attention_pattern_is_not_in_the_fingerprint(tmp_path, model_type):
    """The terms are products of weights: a model whose windows, local/global layout or NoPE layers differ computes
    something else (the logits move) with the same weights, and has the same fingerprint (docs/invariants.md)."""
    from noseprint.models.invariants import invariant_terms
    from noseprint.models.weights import read_model
    from transformers import AutoModelForCausalLM

    extra = {"sliding_window": 4, "layer_types": ["sliding_attention"] * 3} if model_type != "smollm3" else {}
    model = build(model_type, 0) if not extra else _built(model_type, extra)
    original = save_tiny(model, tmp_path / "original")
    changed = tmp_path / "changed"
    save_tiny(model, changed)
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, **ATTENTION_PATTERN[model_type]}))
    ids = torch.randint(0, 303, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = [
            AutoModelForCausalLM.from_pretrained(str(f)).eval()(input_ids=ids).logits for f in (original, changed)
        ]
    assert float((logits[0] - logits[1]).abs().max()) > 1e-4 * float(logits[0].abs().max())
    terms = []
    for folder in (original, changed):
        read = read_model(folder, 8, None, allow_pickle=False)
        terms.append(invariant_terms(read.embedding, read.layers, list(read.layout.layers)))
    np.testing.assert_array_equal(terms[0], terms[1])


def _built(model_type: str, extra: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.conftest import with_trained_norms
    from tests.test_lineage_families import TINY

    config = AutoConfig.for_model(model_type, **{**TINY, **FAMILIES[model_type], **extra})
    torch.manual_seed(0)
    return with_trained_norms(AutoModelForCausalLM.from_config(config).eval(), 0)


def test_release_formats_the_fingerprint_cannot_read_are_refused_by_name(tmp_path):
    """DeepSeek-V3's block-scaled FP8 and gpt-oss's MXFP4 experts, read raw, would give wrong weights."""
    from noseprint.models.weights import read_model
    from safetensors.torch import load_file, save_file

    for model_type, edit, message in (
        ("deepseek_v3", lambda s: s.update({"model.layers.2.self_attn.o_proj.weight_scale_inv": torch.ones(1, 1)}),
         "block-scaled FP8"),
        ("gpt_oss", lambda s: s.update({"model.layers.2.mlp.experts.gate_up_proj_blocks":
                                        s.pop("model.layers.2.mlp.experts.gate_up_proj")}), "MXFP4"),
    ):  # fmt: skip
        folder = save_tiny(build(model_type, 0), tmp_path / model_type)
        state = load_file(str(folder / "model.safetensors"))
        edit(state)
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(UsageError, match=message):
            read_model(folder, 8, None, allow_pickle=False)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_the_streamed_reader_and_the_chunk_plan_give_the_in_memory_terms(tmp_path, model_type):
    """`fingerprint` streams every view's parts block by block (float64 here: the exact check; float32 within the
    bound tests/test_streamed_reading.py holds); for the provable families the chunk plan's partial terms, which the
    encode proof sums, add up to the same terms."""
    from noseprint.models.invariants import invariant_terms
    from noseprint.models.streamed import planned_layer_terms, stream_chunking, streamed_layer_terms
    from noseprint.models.weights import open_model, read_model

    folder = save_tiny(build(model_type, 0), tmp_path / model_type)
    read = read_model(folder, 8, None, allow_pickle=False)
    expected = invariant_terms(read.embedding, read.layers, list(read.layout.layers))
    opened = open_model(folder, 8, None, allow_pickle=False)
    small = Chunking(kv_heads=1, ffn_rows=8)  # FFN chunks that cut through the experts (the routing sliced with them)
    for dtype, tolerance, chunking in ((torch.float64, 1e-12, None), (torch.float64, 1e-12, small),
                                       (torch.float32, 1e-5, None)):  # fmt: skip
        streamed = np.concatenate(
            [streamed_layer_terms(opened.embedding, opened.lazy_layer(p), shape, dtype=dtype, chunking=chunking)
             for p, shape in enumerate(opened.layout.layers)]
        )  # fmt: skip
        assert np.abs(streamed - expected).max() <= tolerance * np.abs(expected).max()
    if model_type in PROVABLE:
        planned = np.concatenate(
            [planned_layer_terms(read.embedding, w, shape, stream_chunking(8, shape))
             for w, shape in zip(read.layers, read.layout.layers, strict=True)]
        )  # fmt: skip
        assert np.abs(planned - expected).max() <= 1e-12 * np.abs(expected).max()


@pytest.mark.parametrize("model_type", MOE)
def test_experts_fused_as_transformers_5_holds_them_read_as_saved_per_expert(tmp_path, model_type):
    """transformers 5 keeps Mixtral's, Qwen3-MoE's and DeepSeek's experts fused in memory ((experts, 2·ffn, hidden)
    gate_up_proj, (experts, hidden, ffn) down_proj, the router as `mlp.gate`) and splits them per expert when it
    saves; a checkpoint written from the in-memory names reads the same."""
    from noseprint.models.invariants import invariant_terms
    from noseprint.models.weights import read_model
    from safetensors.torch import save_file

    model = build(model_type, 0)
    saved = save_tiny(model, tmp_path / "saved")
    fused = save_tiny(model, tmp_path / "fused")
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    (fused / "model.safetensors").unlink()
    save_file(state, str(fused / "model.safetensors"), metadata={"format": "pt"})
    terms = []
    for folder in (saved, fused):
        read = read_model(folder, 8, None, allow_pickle=False)
        terms.append(invariant_terms(read.embedding, read.layers, list(read.layout.layers)))
    np.testing.assert_allclose(terms[1], terms[0], rtol=1e-12, atol=0)


def test_a_dense_layer_before_a_moe_layer_is_fingerprinted_with_its_own_shape(tmp_path):
    """DeepSeek-V3 with its dense layers reaching the last-but-one: the two fingerprinted layers differ in shape."""
    from noseprint.lineage.compare import compare

    from tests.test_lineage_families import fine_tuned

    extra = {"first_k_dense_replace": 2}
    base = _built("deepseek_v3", extra)
    layout = read_layout(save_tiny(base, tmp_path / "base"), 8)
    assert layout.layers[0].ffn == TINY_FFN and layout.layers[1].ffn == 4 * 8 + 8
    result = compare(tmp_path / "base", save_tiny(fine_tuned(base), tmp_path / "tuned"), tmp_path / "cmp.png")
    assert result["verdict"] == "same base model"


@pytest.mark.proof
def test_a_qwen3_model_is_proven_verified_and_opened_as_a_llama_is(tmp_path):
    """The q/k norms folded by the adapter leave the chunk circuits' products: the bundle verifies, its commitment
    opens to the checkpoint (check-opening recomputes the folded matrices), its z is the fingerprint's. (Run by hand
    for issue 35: 6 chunks, logrows 12, about 3 minutes on the 2-core machine.)"""
    model = save_tiny(build("qwen3", 0), tmp_path / "qwen3")
    home, bundle = tmp_path / "home", tmp_path / "bundle"
    run_cli("prove", str(model), "--out", str(bundle), "--n-tokens", TOKENS, "--init-dev-srs", "--json", home=home,
            check=True)  # fmt: skip
    verified = json.loads(run_cli("verify", str(bundle), "--json", home=home).stdout)
    assert verified["valid"], verified
    opening = tmp_path / "bundle.opening.json"
    opened = run_cli("check-opening", str(bundle), str(model), "--opening", str(opening), "--json", home=home)
    assert json.loads(opened.stdout)["matches"]
    compared = run_cli("compare", str(bundle), str(model), "--image", str(tmp_path / "c.png"), "--json", home=home)
    assert json.loads(compared.stdout)["verdict"] == "same base model"
