"""The canonical fingerprint against every free disguise of every family (bench.attacks.transforms).

Tiny models of each family get trained-like norms (γ = 1 + 0.3·randn, β = 0.1·randn) and weights
large enough for sharp attention, all in float64. Every function-preserving transform that applies
(alone, and all of them chained) must keep the logits to rounding AND the fingerprint read back from
the saved checkpoint to rounding; changing the norms alone must move the fingerprint.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from noseprint.lineage.verdict import SAME, verdict
from noseprint.models.invariants import invariant_cosine, standardise
from noseprint.models.weights import read_model
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

import bench.attacks.families  # noqa: F401  (registers issue 35's transforms)
from bench.attacks.transforms import (
    FUNCTION_PRESERVING,
    applicable,
    compose,
    describe,
    fold_norms,
    max_logit_change,
    rotate_residual,
)
from bench.zoo.reparam import REPARAMETRISATIONS, permute_vocabulary
from bench.zoo.reparam import max_logit_change as vocab_logit_change
from tests.conftest import save_tiny

TOKENS = 8
SEED = 5
WEIGHT_STD = 0.3
"""Init scale of every matrix: attention sharp enough that a wrong map shows in the logits."""
NORM_SPREAD = 0.3
BIAS_STD = 0.1
LOGIT_RTOL = 1e-9
"""Float64 transforms keep the logits to rounding: max |Δlogit| / max |logit|."""
RMS_LOGIT_RTOL = 1e-5
"""transformers' RMSNorms compute in float32 whatever the model's dtype: rounding at ~1e-7 per norm."""
SAME_ICS = 0.99
ROUNDING_SLACK = 1e-9
"""1 - ICS for a transform the canonical form is built to ignore: rounding, nothing more."""
MOVED_COSINE = 0.5
"""A rotation leaves the parameters far from the original (cosine of the whole parameter vector)."""
MIN_WEIGHT_CHANGE = 1e-3
NORM_CHANGE_LOGITS = 1e-3
"""Redrawing the norms changes the function by at least this (relative), or the negative test is void."""
TERM_NAMES = ("QK", "VO", "FFN")

GQA = dict(hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2)
EXPERTS = dict(num_local_experts=4, num_experts_per_tok=2)
ISSUE35: dict[str, dict] = {
    "qwen3": {},
    "gemma3_text": {},
    "olmo2": {},
    "smollm3": dict(pad_token_id=0),
    "mixtral": EXPERTS,
    "qwen3_moe": dict(EXPERTS, moe_intermediate_size=8),
    "gpt_oss": EXPERTS,
    "deepseek_v3": dict(
        EXPERTS,
        moe_intermediate_size=8,
        num_key_value_heads=4,
        first_k_dense_replace=1,
        n_group=2,
        topk_group=1,
        q_lora_rank=8,
        kv_lora_rank=8,
        qk_rope_head_dim=4,
        qk_nope_head_dim=4,
        v_head_dim=6,
        n_shared_experts=1,
    ),
}
"""Issue 35's families: q/k norms, mixtures of experts (DeepSeek-V3: a dense first layer, a shared expert and
latent attention whose value heads (6) are narrower than its q/k heads (8))."""
CASES: dict[str, tuple[str, dict]] = {
    "llama": ("llama", GQA),
    "mistral": ("mistral", GQA),
    "qwen2": ("qwen2", GQA),  # q/k/v biases
    "gemma": ("gemma", {**GQA, "head_dim": 4}),  # γ = 1 + weight, tied lm_head
    "gemma2": ("gemma2", {**GQA, "head_dim": 4}),  # post-norms on the writers
    "phi3": ("phi3", dict(hidden_size=16, intermediate_size=24, num_attention_heads=4, num_key_value_heads=2,
                          pad_token_id=0)),
    "gpt2": ("gpt2", dict(n_embd=16, n_head=4)),
    "gpt_neox": ("gpt_neox", dict(hidden_size=16, intermediate_size=32, num_attention_heads=4)),
    "gptj": ("gptj", dict(n_embd=16, n_head=4, rotary_dim=4)),
    "opt": ("opt", dict(hidden_size=16, ffn_dim=32, num_attention_heads=4, word_embed_proj_dim=8)),
    "opt-post-ln": ("opt", dict(hidden_size=16, ffn_dim=32, num_attention_heads=4, word_embed_proj_dim=8,
                                do_layer_norm_before=False)),
    "falcon-multi-query": ("falcon", dict(hidden_size=16, num_attention_heads=4, multi_query=True)),
    "falcon-new-decoder": ("falcon", dict(hidden_size=16, num_attention_heads=4, new_decoder_architecture=True,
                                          num_kv_heads=2)),
    "falcon-per-head": ("falcon", dict(hidden_size=16, num_attention_heads=4, multi_query=False)),
    "bert": ("bert", dict(hidden_size=16, intermediate_size=32, num_attention_heads=4)),
    **{case: (case, {**GQA, "head_dim": 4, **extra}) for case, extra in ISSUE35.items()},
}  # fmt: skip
COMMON = dict(vocab_size=303, num_hidden_layers=3, bos_token_id=1, eos_token_id=2)
"""The test tokenizer's 303 ids, <s> = 1 and </s> = 2 (some configs default to ids past the vocabulary)."""

ROTATE = "fold_norms+rotate_residual"
LLAMA_REPARAMS = tuple(name for name in REPARAMETRISATIONS if name != "permute_ffn_neurons")
EVERYWHERE = ("permute_residual", "permute_ffn_neurons")
RMS = (*EVERYWHERE, "fold_norms", ROTATE, "scale_residual")
LAYERNORM = (*EVERYWHERE, "fold_norms", ROTATE, "shift_along_ones")
FALCON = ("multi-query", "new-decoder", "per-head")
HEADS = ("permute_heads", "permute_value_units", "rotate_value_space")
QK_NORM = ("scale_qk_heads", "swap_qk_norm_scales")
ROPE_QK = ("scale_qk", "rotate_qk")
MOE = ("permute_experts", "permute_expert_neurons", "scale_expert_up")
MLA = ("permute_heads", "rotate_value_space", "fold_latent_norms", "rotate_latents", "scale_latents", "map_mla_nope")
MOE_RMS = tuple(name for name in RMS if name != "permute_ffn_neurons")  # no dense FFN to permute
EXPECTED: dict[str, tuple[str, ...]] = {
    "qwen3": (*RMS, *HEADS, "scale_ffn_up", *QK_NORM),
    "smollm3": (*RMS, *LLAMA_REPARAMS),
    "gemma3_text": (*EVERYWHERE, "fold_norms", *HEADS, "scale_ffn_up", *QK_NORM),
    "olmo2": (*EVERYWHERE, *HEADS, "scale_ffn_up", *QK_NORM),
    "mixtral": (*MOE_RMS, *HEADS, *ROPE_QK, *MOE),
    "qwen3_moe": (*MOE_RMS, *HEADS, *QK_NORM, *MOE),
    "gpt_oss": (*MOE_RMS, *HEADS, *ROPE_QK, "permute_experts", "permute_expert_neurons"),
    "deepseek_v3": (*RMS, *MLA, *MOE),  # its dense first layer and shared expert take permute_ffn_neurons
    **dict.fromkeys(("llama", "mistral", "qwen2", "gemma"), (*RMS, *LLAMA_REPARAMS)),
    "gemma2": (*EVERYWHERE, "fold_norms", *LLAMA_REPARAMS),
    "phi3": RMS,
    **dict.fromkeys(("gpt2", "gpt_neox", "gptj", "opt", *(f"falcon-{layout}" for layout in FALCON)), LAYERNORM),
    "opt-post-ln": EVERYWHERE,
    "bert": (*EVERYWHERE, "shift_along_ones"),
}
"""What applies where, stated here rather than read from the library, so a transform that silently
stops applying to a family fails `test_applicable_transforms`."""
ORDER = ("fold_norms", "rotate_residual", "permute_residual", "scale_residual", "shift_along_ones",
         "permute_ffn_neurons", *LLAMA_REPARAMS, *MOE, *QK_NORM, *MLA[2:])  # fmt: skip
"""The full disguise: fold first (rotation needs γ = 1), then everything else."""


def steps(name: str) -> list[str]:
    return name.split("+")


def disguise(case: str) -> str:
    singles = {step for name in EXPECTED[case] for step in steps(name)}
    return "+".join(step for step in ORDER if step in singles)


TRANSFORM_CASES = [(case, name) for case in CASES for name in (*EXPECTED[case], disguise(case))]
CAUSAL = [case for case, (model_type, _) in CASES.items() if model_type != "bert"]


# ---------------------------------------------------------------------------------------------
# Tiny trained-like models and their fingerprints


@torch.no_grad()
def trained_like(model, seed: int):
    """Random matrices, biases and norms: γ = 1 + spread·randn (Gemma's weight is γ - 1), β = small."""
    g = torch.Generator().manual_seed(seed)
    offset = describe(model).offset
    norm_params = {id(p) for m in model.modules() if "norm" in type(m).__name__.lower() for p in m.parameters()}
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
        if id(p) in norm_params and name.endswith("weight"):
            p.copy_(1 - offset + NORM_SPREAD * noise)
        elif p.dim() == 1:
            p.copy_(BIAS_STD * noise)
        else:
            p.copy_(WEIGHT_STD * noise)
    return model


FLOAT64 = defaultdict(dict, dict.fromkeys(("mixtral", "qwen3_moe", "gpt_oss", "deepseek_v3"),
                                            {"experts_implementation": "eager"}))  # fmt: skip
"""transformers' default experts kernel (grouped_mm) takes no float64."""


def build(case: str, seed: int = 0):
    model_type, kwargs = CASES[case]
    config = AutoConfig.for_model(model_type, **{**COMMON, **kwargs})
    torch.manual_seed(seed)
    model = (AutoModel if model_type == "bert" else AutoModelForCausalLM).from_config(config, **FLOAT64[model_type])
    return trained_like(model.double().eval(), seed)


def fingerprint(folder: Path) -> tuple[np.ndarray, list[str]]:
    from noseprint.models.invariants import invariant_terms

    read = read_model(folder, TOKENS, None, allow_pickle=False)
    return invariant_terms(read.embedding, read.layers, list(read.layout.layers)), [t.string for t in read.tokens]


INPUT_IDS = torch.randint(0, COMMON["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(1))


@dataclass
class Base:
    model: torch.nn.Module
    folder: Path
    terms: np.ndarray
    tokens: list[str]
    tolerance: float
    """The allowed max |Δlogit| on INPUT_IDS."""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """case -> its Base, built, saved and fingerprinted once per module."""

    @cache
    def get(case: str) -> Base:
        model = build(case)
        folder = save_tiny(model, tmp_path_factory.mktemp(case) / "base")
        return Base(model, folder, *fingerprint(folder), logit_tolerance(model, INPUT_IDS))

    return get


def term_cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per-term cosine of the standardised terms, labelled by fingerprinted layer and term."""
    x, y = standardise(a), standardise(b)
    return {
        f"layer{i // len(TERM_NAMES)}.{TERM_NAMES[i % len(TERM_NAMES)]}": float(
            (x[i] * y[i]).sum() / (np.linalg.norm(x[i]) * np.linalg.norm(y[i]))
        )
        for i in range(len(a))
    }


def logit_scale(model, ids) -> float:
    with torch.no_grad():
        out = model(input_ids=ids)
    return float((out.logits if hasattr(out, "logits") else out.last_hidden_state).abs().max())


def logit_tolerance(model, ids) -> float:
    """The allowed max |Δlogit|: relative to the largest logit, at the precision the norms compute in."""
    return (LOGIT_RTOL if describe(model).centred else RMS_LOGIT_RTOL) * logit_scale(model, ids)


def state_cosine(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    x = torch.cat([sa[k].double().ravel() for k in sorted(sa)])
    y = torch.cat([sb[k].double().ravel() for k in sorted(sa)])
    return float(x @ y / (x.norm() * y.norm()))


def max_weight_change(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def assert_same_fingerprint(original: np.ndarray, derived: np.ndarray, label: str) -> float:
    ics = invariant_cosine(original, derived)
    detail = f"{label}: ICS {ics!r}, per term {term_cosines(original, derived)}"
    assert ics >= SAME_ICS and verdict(ics, 0.0) == SAME, detail
    assert 1 - ics < ROUNDING_SLACK, detail
    return ics


# ---------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("case", CASES)
def test_applicable_transforms(case):
    expected = {step for name in EXPECTED[case] for step in steps(name)}
    assert set(applicable(build(case))) == expected


@pytest.mark.parametrize(("case", "name"), TRANSFORM_CASES, ids=[f"{c}-{n}" for c, n in TRANSFORM_CASES])
def test_transform_keeps_function_and_fingerprint(base, tmp_path, case, name):
    parent = base(case)
    model = parent.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    derived = compose(*steps(name))(model, SEED)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the input model was mutated"

    change = max_logit_change(model, derived, INPUT_IDS)
    assert change <= parent.tolerance, f"{case} {name}: logits moved by {change}"
    assert max_weight_change(model, derived) > MIN_WEIGHT_CHANGE, "the weights did not change"
    if "rotate_residual" in name:
        assert state_cosine(model, derived) < MOVED_COSINE

    derived_terms, derived_tokens = fingerprint(save_tiny(derived, tmp_path / "derived"))
    assert derived_tokens == parent.tokens
    assert_same_fingerprint(parent.terms, derived_terms, f"{case} {name}")


@pytest.mark.parametrize("case", CAUSAL)
def test_vocabulary_permutation_keeps_fingerprint(base, tmp_path, case):
    """Tokens are chosen by string, so the fingerprint finds the moved embedding rows."""
    parent = base(case)
    new_id_of = permute_vocabulary(parent.folder, tmp_path / "shuffled", seed=SEED)
    shuffled = AutoModelForCausalLM.from_pretrained(str(tmp_path / "shuffled"), **FLOAT64[CASES[case][0]]).eval()
    assert next(shuffled.parameters()).dtype == torch.float64
    assert vocab_logit_change(parent.model, shuffled, INPUT_IDS, new_id_of) <= parent.tolerance
    derived_terms, derived_tokens = fingerprint(tmp_path / "shuffled")
    assert derived_tokens == parent.tokens
    assert_same_fingerprint(parent.terms, derived_terms, f"{case} permute_vocabulary")


@pytest.mark.parametrize("case", CASES)
def test_changing_only_the_norms_moves_the_fingerprint(base, tmp_path, case):
    """The negative: a model whose norms differ computes something else, and the fingerprint sees it."""
    parent = base(case)
    other = build(case)
    offset = describe(other).offset
    g = torch.Generator().manual_seed(SEED)
    stream = describe(other)
    with torch.no_grad():
        for norm in [*stream.norm_modules(), *stream.head_norms]:  # OLMo 2 has no pre-norms: its q/k norms
            norm.weight.copy_(1 - offset + NORM_SPREAD * torch.randn(norm.weight.shape, generator=g))
    assert max_logit_change(parent.model, other, INPUT_IDS) > NORM_CHANGE_LOGITS * logit_scale(parent.model, INPUT_IDS)
    moved, _ = fingerprint(save_tiny(other, tmp_path / "norms"))
    ics = invariant_cosine(parent.terms, moved)
    detail = f"per term {term_cosines(parent.terms, moved)}"
    assert ics < SAME_ICS, f"{case}: ICS {ics!r} after redrawing the norms; {detail}"


PRE_NORM_CASES = [case for case, names in EXPECTED.items() if "fold_norms" in names]


@pytest.mark.parametrize("create_biases", [False, True], ids=["keep-beta", "create-biases"])
@pytest.mark.parametrize("case", PRE_NORM_CASES)
def test_fold_leaves_unit_scales(base, case, create_biases):
    """After folding every pre-norm scales by 1; with create_biases every β went into reader biases
    (GPT-J's q/k/v and Falcon get new biases: in memory only, their configs have none)."""
    parent = base(case)
    folded = fold_norms(parent.model, create_biases=create_biases)
    stream = describe(folded)
    for norm in stream.norms:
        torch.testing.assert_close(norm.module.weight.double() + stream.offset, torch.ones(stream.hidden).double())
        if create_biases and getattr(norm.module, "bias", None) is not None:
            assert not norm.module.bias.any()
    assert max_logit_change(parent.model, folded, INPUT_IDS) <= parent.tolerance


@pytest.mark.parametrize("case", ["bert", "opt-post-ln"])
def test_post_ln_norms_cannot_be_folded(base, case):
    with pytest.raises(ValueError, match="post-LN"):
        fold_norms(base(case).model)


@pytest.mark.parametrize("case", ["llama", "gemma", "phi3", "gpt2", "falcon-new-decoder", "gemma2"])
def test_rotation_needs_uniform_norm_scales(base, case):
    """Unfolded γ does not commute with a rotation; Gemma 2's writer post-norms cannot be folded at all."""
    model = base(case).model
    if case == "gemma2":
        model = fold_norms(model)
    with pytest.raises(ValueError, match="fold_norms first"):
        rotate_residual(model, SEED)


def test_registry_covers_the_llama_reparametrisations():
    assert set(REPARAMETRISATIONS) <= set(FUNCTION_PRESERVING)
