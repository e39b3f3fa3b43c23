"""The inference verifier's arithmetic, without proofs: the ablation chains the prover makes are the ones the
verifier expects, and `layer_effect` is zero exactly for a layer that changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from core.challenge import Challenge
from core.inference import InferenceShape, ablations
from prover.inference import proofs_per_prompt
from verifier.inference import _expected_entries, layer_effect

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
