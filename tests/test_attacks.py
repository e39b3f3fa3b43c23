"""The attack bench's building blocks on a tiny LLaMA: degradations write readable models, the differentiable
fingerprint is the real one, and its gradient really moves the fingerprint (else the adaptive curves mean nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from noseprint.lineage.compare import compare
from noseprint.lineage.verdict import SAME

from bench.attacks import adaptive, degrade
from tests.conftest import save_tiny, tiny_llama

INT8_MIN_ICS = 0.99
Z_AGREEMENT = 0.999
"""Live z against `noseprint fingerprint`'s z, which rounds the inputs to the circuit's scale first."""
ATTACK_STEPS = 8
ATTACK_WEIGHT = 100.0
Z_DROP = 0.1
"""A strong λ must take the z-cosine at least this far below the honest (λ = 0) fine-tune's."""
SEQUENCE, ROWS = 16, 32


@pytest.fixture
def tiny_folder(tmp_path):
    return save_tiny(tiny_llama(seed=0), tmp_path / "tiny")


def random_corpus(vocab: int) -> adaptive.Corpus:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(vocab, (ROWS, SEQUENCE), generator=generator)
    return adaptive.Corpus(rows, rows[:4], rows[4:8])


def test_int8_round_trip_stays_same_base(tiny_folder, tmp_path):
    quantised = degrade.quantise_int8(tiny_folder, tmp_path / "int8")
    result = compare(tiny_folder, quantised)
    assert result["ics"] > INT8_MIN_ICS
    assert result["verdict"] == SAME


def test_differentiable_fingerprint_is_the_numpy_one(tiny_folder, tmp_path):
    model = adaptive.load_causal(tiny_folder)
    fingerprint = adaptive.DifferentiableFingerprint(tiny_folder)
    assert adaptive.check_against_numpy(fingerprint, model) >= 1 - adaptive.NUMPY_AGREEMENT
    degrade.fingerprint_once(tiny_folder, tmp_path / "print")
    record = json.loads((tmp_path / "print" / "fingerprint.json").read_text())
    published = np.array(record["z"], dtype=np.float64)
    live = fingerprint.signature(model).z.detach().numpy()
    assert published @ live / (np.linalg.norm(published) * np.linalg.norm(live)) > Z_AGREEMENT


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_adaptive_steps_lower_the_z_cosine(tiny_folder):
    model = adaptive.load_causal(tiny_folder)
    fingerprint = adaptive.DifferentiableFingerprint(tiny_folder)
    corpus = random_corpus(model.config.vocab_size)
    with torch.no_grad():
        reference = fingerprint.signature(model).detached()
    reached = {}
    for weight in (0.0, ATTACK_WEIGHT):
        attacked = adaptive.evade(model, fingerprint, corpus, weight=weight, steps=ATTACK_STEPS, seed=0, target="z")
        reached[weight] = adaptive.measure(attacked, fingerprint, reference, corpus).live_z_cosine
    assert reached[ATTACK_WEIGHT] < reached[0.0] - Z_DROP


def test_drop_last_layers_writes_a_loadable_shallower_model(tiny_folder, tmp_path):
    before = adaptive.load_causal(tiny_folder)
    dropped = degrade.drop_last_layers(tiny_folder, tmp_path / "dropped", 1)
    after = adaptive.load_causal(dropped)
    assert after.config.num_hidden_layers == before.config.num_hidden_layers - 1
    assert len(after.model.layers) == len(before.model.layers) - 1
    assert after(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] == before.config.vocab_size
    assert compare(tiny_folder, dropped)["ics"] is not None
