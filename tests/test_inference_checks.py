"""The inference verifier's arithmetic, without proofs: the ablation chains the prover makes are the ones the
verifier expects, `layer_effect` is zero exactly for a layer that changes nothing, and `logprob_deviation` is
zero for the same logits at any temperature and large for another model's, whatever temperature the server
or the owner's head factor hides it behind."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from noseprint.core.answers import Answers
from noseprint.core.challenge import Challenge
from noseprint.core.chunks import Chunking
from noseprint.core.whole_model import (
    LOGIT_GAIN_BITS,
    InferenceShape,
    PartSizes,
    ablations,
    choose_part_sizes,
    fingerprint_map,
    layer_parts,
    layer_pieces,
    part_sizes_errors,
    whole_layer,
)
from noseprint.prover.challenge_proofs import proofs_per_prompt
from noseprint.verifier.challenge import _expected_entries
from noseprint.verifier.challenge_statistics import (
    MAX_LOGPROB_DEVIATION,
    InferenceReport,
    check_logprobs,
    layer_effect,
    logprob_deviation,
)
from noseprint.verifier.report import CheckFailed

SHAPE = InferenceShape(vocab=300, hidden=16, layers=5, heads=2, kv_heads=1, head_dim=8, ffn=32, rope_theta=10000)


def test_each_fingerprinted_layer_gets_a_chain_of_the_layers_after_it():
    assert ablations(5, [3, 4]) == [(3, [4]), (4, [])]
    assert ablations(5, [4, 2]) == [(2, [3, 4]), (4, [])]


@pytest.mark.parametrize("fingerprinted", [[4], [3, 4], [0, 1, 2, 3, 4]])
@pytest.mark.parametrize("sizes", [None, PartSizes(attention=1, ffn=1), PartSizes(attention=1, ffn=2)])
def test_the_prover_makes_as_many_proofs_as_the_verifier_expects(fingerprinted, sizes):
    challenge = Challenge.derive("ab" * 32, bytes(16), "auditor", SHAPE.vocab, 3, 4)
    layer = layer_pieces(SHAPE, Chunking(kv_heads=1, ffn_rows=8), fingerprint_map(fingerprinted))[0]
    parts = layer_parts(layer, sizes)
    expected = _expected_entries(SHAPE, challenge, fingerprinted, parts)
    assert len(expected) == 1 + 3 * proofs_per_prompt(SHAPE, fingerprinted, len(parts))
    assert len({name for name, *_ in expected}) == len(expected)  # every proof has its own file


WIDE = InferenceShape(vocab=300, hidden=16, layers=2, heads=4, kv_heads=2, head_dim=4, ffn=32, rope_theta=10000)


def test_a_layer_is_one_proof_unless_it_is_cut_into_parts():
    """Parts take every piece of the layer exactly once (the norm and scales in each), attention before FFN."""
    layer = layer_pieces(WIDE, Chunking(kv_heads=1, ffn_rows=8), {})[1]
    assert [(p.kind, p.suffix) for p in layer_parts(layer)] == [("layer", "")]
    assert [(p.kind, p.suffix) for p in layer_parts(layer, whole_layer(layer))] == [("layer", "")]
    parts = layer_parts(layer, PartSizes(attention=1, ffn=2))
    assert [p.suffix for p in parts] == [".attention0", ".attention1", ".ffn0", ".ffn1"]
    taken = Counter(piece.name for part in parts for piece in part.pieces)
    shared = {layer.attn_norm.name: 2, layer.ffn_norm.name: 2, layer.scales.name: 4}
    assert taken == {piece.name: shared.get(piece.name, 1) for piece in layer.ordered()}


def test_part_sizes_are_the_most_blocks_within_the_weights_and_must_tile_the_layer():
    layer = layer_pieces(WIDE, Chunking(kv_heads=1, ffn_rows=8), {})[0]
    block = 2 * 8 * 16 + 2 * 4 * 16  # an attention block (q, o: two query heads; k, v: one K/V head) = 8 FFN rows
    assert block == 3 * 8 * 16
    assert choose_part_sizes(layer, 10**9) == whole_layer(layer) == PartSizes(attention=2, ffn=4)
    assert choose_part_sizes(layer, 3 * block) == PartSizes(attention=2, ffn=2)  # 3 FFN blocks do not tile 4
    assert choose_part_sizes(layer, 2 * block - 1) == PartSizes(attention=1, ffn=1)
    assert choose_part_sizes(layer, 1) == PartSizes(attention=1, ffn=1)
    assert part_sizes_errors(layer, PartSizes(attention=1, ffn=3)) and part_sizes_errors(layer, PartSizes(4, 4))
    assert not part_sizes_errors(layer, PartSizes(attention=2, ffn=1))


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
RESOLUTION = 1 / (1 << (8 + LOGIT_GAIN_BITS))
"""The proofs' logits are integers at 2^-16 (the input scale's 2^-8, gained)."""
FLATTENED = 100.0
"""A server that divides its logits by this before its softmax: its top-5 gaps fall far under 0.1 nats."""


def fixed_point(logits: np.ndarray) -> np.ndarray:
    return np.round(logits / RESOLUTION) * RESOLUTION


def check(proven: np.ndarray, served: np.ndarray | None, k: int = 5, required: bool = False) -> InferenceReport:
    """`check_logprobs` on proven logits (positions x vocabulary) against a served model's top-5."""
    greedy = proven.argmax(axis=1).reshape(PROMPTS, LENGTH).tolist()
    top = None
    if served is not None:
        flat = served_top(served, k)
        top = [flat[i * LENGTH : (i + 1) * LENGTH] for i in range(PROMPTS)]
        greedy = [[pairs[0][0] for pairs in prompt] for prompt in top]
    report = InferenceReport(agreement=1.0)
    answers = Answers("0" * 64, "test", greedy, top)
    check_logprobs(report, list(proven.reshape(PROMPTS, LENGTH, -1)), answers, required)
    return report


def peaked(seed: int) -> np.ndarray:
    return LOGIT_SCALE * np.random.default_rng(seed).normal(size=(PROMPTS * LENGTH, VOCAB))


def test_the_committed_model_served_passes_through_fixed_point():
    served = peaked(5)
    report = check(fixed_point(served), served)
    assert report.checks_passed == ["logprobs"] and report.logprob_deviation < MAX_LOGPROB_DEVIATION / 4
    assert report.logprob_temperature == pytest.approx(1.0, rel=1e-3)


def test_a_neighbour_with_the_same_greedy_tokens_fails():
    """Every non-greedy logit moved a little: the greedy tokens stay, the gaps between the top-k do not."""
    proven = peaked(6)
    served = proven + 0.6 * np.random.default_rng(7).normal(size=proven.shape)
    served[np.arange(len(served)), proven.argmax(axis=1)] = served.max(axis=1) + 0.5  # keep every greedy token
    with pytest.raises(CheckFailed) as failed:
        check(proven, served)
    assert failed.value.check == "logprobs"


def test_a_smaller_committed_head_factor_does_not_hide_another_model():
    """The owner's head factor is a temperature: fitted away, and a tiny one only makes the proven logits coarse."""
    served = peaked(8)
    neighbour = served + 0.6 * np.random.default_rng(9).normal(size=served.shape)
    for factor in (1.0, 0.01, 1e-5):  # at 1e-5 the proven gaps are a few units of 2^-16: rounding alone fails
        with pytest.raises(CheckFailed):
            check(fixed_point(neighbour * factor), served)


def test_a_server_that_flattens_its_log_probabilities_gains_nothing():
    """Issue 20's lying API: log-probabilities at a high temperature once skipped the check (it was gated on the
    served gaps); now the committed model served flat passes and its neighbour served flat fails."""
    served = peaked(10)
    honest = check(fixed_point(served), served / FLATTENED)
    assert honest.served_gap < 0.1 and honest.checks_passed == ["logprobs"]
    assert honest.logprob_temperature == pytest.approx(1 / FLATTENED, rel=1e-3)  # the report shows the flattening
    neighbour = served + 0.6 * np.random.default_rng(11).normal(size=served.shape)
    with pytest.raises(CheckFailed) as failed:
        check(fixed_point(neighbour), served / FLATTENED)
    assert failed.value.check == "logprobs"
    with pytest.raises(CheckFailed):  # flattened on both sides: the owner's head factor shrunk to match
        check(fixed_point(neighbour / FLATTENED), served / FLATTENED)


def test_answers_without_log_probabilities_are_skipped_and_said_so_unless_required():
    proven = peaked(12)
    none = check(proven, None)
    assert none.checks_passed == [] and "no log-probabilities" in str(none.logprobs_skipped)
    single = check(proven, proven, k=1)
    assert single.checks_passed == [] and "one token per position" in str(single.logprobs_skipped)
    for served, k in ((None, 5), (proven, 1)):
        with pytest.raises(CheckFailed) as failed:
            check(proven, served, k=k, required=True)
        assert failed.value.check == "logprobs" and "requires log-probabilities" in failed.value.reason


def neighbour_of(proven: np.ndarray, seed: int) -> np.ndarray:
    """Another model near `proven`: every logit moved, as a light fine-tune moves them."""
    return proven + 0.6 * np.random.default_rng(seed).normal(size=proven.shape)


def check_top(proven: np.ndarray, top: list[list[tuple[int, float]]]) -> InferenceReport:
    """`check_logprobs` on answers a server wrote itself (greedy tokens its top tokens)."""
    prompts = [top[i * LENGTH : (i + 1) * LENGTH] for i in range(PROMPTS)]
    greedy = [[pairs[0][0] for pairs in prompt] for prompt in prompts]
    report = InferenceReport(agreement=1.0)
    check_logprobs(report, list(proven.reshape(PROMPTS, LENGTH, -1)), Answers("0" * 64, "test", greedy, prompts), False)
    return report


def test_a_second_token_at_chosen_positions_only_is_refused():
    """One gap fits a temperature exactly: a server that ranks a second token only where it likes would pick the
    positions compared (deviation 0 for any model)."""
    proven = peaked(13)
    top = [pairs[:1] for pairs in served_top(neighbour_of(proven, 14), 5)]
    top[3] = served_top(neighbour_of(proven, 14), 5)[3][:2]
    with pytest.raises(CheckFailed, match="at 1 of 64 positions only"):
        check_top(proven, top)


def test_top_k_lists_tied_everywhere_are_refused():
    """A server that flattens until its top-k ties (rounded log-probabilities) leaves no gap to compare."""
    proven = peaked(15)
    top = [[(token, round(logprob / 1e3, 2)) for token, logprob in pairs] for pairs in served_top(proven, 5)]
    with pytest.raises(CheckFailed, match="tie their top-k"):
        check_top(proven, top)


def test_gaps_shaped_by_the_server_do_not_pass_a_neighbour():
    """The server sends its own (neighbour) model's top two tokens with a tiny gap at most positions and a huge
    one where its top two nearly tie. With these seeds the fit once clamped its temperature to zero and scored
    the answers against the overall mean gap: deviation 0.000, passed. A temperature at or below zero now fails,
    and the normaliser is the median position's gap (other seeds: deviations of 10^6 and more)."""
    proven = peaked(20)
    served = served_top(neighbour_of(proven, 21), 2)
    closest = set(np.argsort([a[1] - b[1] for a, b in served])[: len(served) // 4].tolist())
    top = [[a, (b[0], a[1] - (1000.0 if i in closest else 1e-6))] for i, (a, b) in enumerate(served)]
    with pytest.raises(CheckFailed):
        check_top(proven, top)


def test_a_ranking_against_the_proven_logits_is_refused():
    """A negative fitted temperature: the served top-k order is the proven order reversed."""
    proven = peaked(18)
    with pytest.raises(CheckFailed, match="rank tokens against the proven logits"):
        check_top(proven, served_top(-proven, 5))
