"""The inference verifier's arithmetic, without proofs: the ablation chains the prover makes are the ones the
verifier expects, `layer_effect` is zero exactly for a layer that changes nothing, and `logprob_deviation` is
zero for the same logits at any temperature and large for another model's."""

from __future__ import annotations

import numpy as np
import pytest

from core.answers import Answers
from core.challenge import Challenge
from core.inference import InferenceShape, ablations
from prover.inference import proofs_per_prompt
from verifier.inference import (
    MAX_LOGPROB_DEVIATION,
    MIN_SERVED_GAP,
    Failed,
    InferenceReport,
    _check_logprobs,
    _expected_entries,
    layer_effect,
    logprob_deviation,
)

SHAPE = InferenceShape(vocab=300, hidden=16, layers=5, heads=2, kv_heads=1, head_dim=8, ffn=32, rope_theta=10000)


def test_each_fingerprinted_layer_gets_a_chain_of_the_layers_after_it():
    assert ablations(5, [3, 4]) == [(3, [4]), (4, [])]
    assert ablations(5, [4, 2]) == [(2, [3, 4]), (4, [])]


@pytest.mark.parametrize("fingerprinted", [[4], [3, 4], [0, 1, 2, 3, 4]])
def test_the_prover_makes_as_many_proofs_as_the_verifier_expects(fingerprinted):
    challenge = Challenge.derive("ab" * 32, bytes(16), "auditor", SHAPE.vocab, 3, 4)
    expected = _expected_entries(SHAPE, challenge, fingerprinted)
    assert len(expected) == 1 + 3 * proofs_per_prompt(SHAPE, fingerprinted)
    assert len({name for name, *_ in expected}) == len(expected)  # every proof has its own file


def test_a_layer_that_changes_nothing_has_no_effect():
    rng = np.random.default_rng(0)
    model = rng.normal(size=(8, 50))
    assert layer_effect(model, model.copy()) == 0.0
    assert layer_effect(model, model + 0.5 * rng.normal(size=model.shape)) > 0.3


def test_the_effect_is_relative_to_the_logits_spread_and_ignores_a_constant_shift():
    rng = np.random.default_rng(1)
    model = rng.normal(size=(8, 50))
    other = model + rng.normal(size=model.shape)
    assert layer_effect(10 * model, 10 * other) == pytest.approx(layer_effect(model, other))
    flat = np.zeros((4, 50))
    assert layer_effect(flat, flat + 1.0) == 0.0  # no spread to compare with: counted as no effect


def served_top(logits: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """What an API returns for these logits: the k most likely tokens and their log-probabilities."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    order = np.argsort(-logprobs, axis=1)[:, :k]
    return [[(int(t), float(logprobs[i, t])) for t in row] for i, row in enumerate(order)]


def test_the_same_logits_at_any_temperature_do_not_deviate():
    """The head's committed factor is the owner's word: a temperature must neither fail nor pass anyone."""
    logits = np.random.default_rng(2).normal(scale=3.0, size=(64, 80))
    for temperature in (1.0, 0.3, 4.0):
        assert logprob_deviation(logits, served_top(logits * temperature, 5)) == pytest.approx(0.0, abs=1e-9)


def test_another_models_log_probabilities_deviate_far_beyond_the_limit():
    rng = np.random.default_rng(3)
    proven, served = rng.normal(size=(64, 80)), rng.normal(size=(64, 80))
    deviation = logprob_deviation(proven, served_top(served, 5))
    assert deviation is not None and deviation > 5 * MAX_LOGPROB_DEVIATION
    nearby = logprob_deviation(proven, served_top(proven + 0.02 * rng.normal(size=proven.shape), 5))
    assert nearby is not None and nearby < MAX_LOGPROB_DEVIATION


def test_no_deviation_without_a_second_token():
    logits = np.random.default_rng(4).normal(size=(8, 20))
    assert logprob_deviation(logits, served_top(logits, 1)) is None


PROMPTS, LENGTH, VOCAB = 8, 8, 80
LOGIT_SCALE = 3.0
"""Logits as peaked as a trained model's (a zoo base's logits have a standard deviation of about 3)."""
RESOLUTION = 1 / 256
"""The proofs' logits are integers at 2^-8."""


def check(proven: np.ndarray, served: np.ndarray | None) -> InferenceReport:
    """`_check_logprobs` on proven logits (positions x vocabulary) against a served model's top-5."""
    greedy = proven.argmax(axis=1).reshape(PROMPTS, LENGTH).tolist()
    top = None
    if served is not None:
        flat = served_top(served, 5)
        top = [flat[i * LENGTH : (i + 1) * LENGTH] for i in range(PROMPTS)]
        greedy = [[pairs[0][0] for pairs in prompt] for prompt in top]
    report = InferenceReport(agreement=1.0)
    _check_logprobs(report, list(proven.reshape(PROMPTS, LENGTH, -1)), Answers("0" * 64, "test", greedy, top))
    return report


def peaked(seed: int) -> np.ndarray:
    return LOGIT_SCALE * np.random.default_rng(seed).normal(size=(PROMPTS * LENGTH, VOCAB))


def test_the_committed_model_served_passes_through_fixed_point():
    served = peaked(5)
    report = check(np.round(served / RESOLUTION) * RESOLUTION, served)
    assert report.checks_passed == ["logprobs"] and report.logprob_deviation < MAX_LOGPROB_DEVIATION / 4


def test_a_neighbour_with_the_same_greedy_tokens_fails():
    """Every non-greedy logit moved a little: the greedy tokens stay, the gaps between the top-k do not."""
    proven = peaked(6)
    served = proven + 0.6 * np.random.default_rng(7).normal(size=proven.shape)
    served[np.arange(len(served)), proven.argmax(axis=1)] = served.max(axis=1) + 0.5  # keep every greedy token
    with pytest.raises(Failed) as failed:
        check(proven, served)
    assert failed.value.check == "logprobs"


def test_a_smaller_committed_head_factor_does_not_hide_another_model():
    """The owner's head factor is a temperature: fitted away, and a tiny one only makes the proven logits coarse."""
    served = peaked(8)
    neighbour = served + 0.6 * np.random.default_rng(9).normal(size=served.shape)
    for factor in (1.0, 0.01):
        with pytest.raises(Failed):
            check(np.round(neighbour * factor / RESOLUTION) * RESOLUTION, served)


def test_flat_or_missing_log_probabilities_are_skipped_and_said_so():
    proven = peaked(10)
    flat = check(proven, proven * 0.01)
    assert flat.checks_passed == [] and flat.served_gap is not None and flat.served_gap < MIN_SERVED_GAP
    assert "too flat" in str(flat.logprobs_skipped)
    none = check(proven, None)
    assert none.checks_passed == [] and "no log-probabilities" in str(none.logprobs_skipped)
