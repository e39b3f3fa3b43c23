"""The inference fixture's models (`tests/make_fixture_inference.py`) and their constants, shared with the
benchmarks that measure the same models (`bench.layer_effect`, `bench.served_agreement`,
`bench.trained_inference`): a tiny LLaMA written from a seed, and the models served in its place."""

from __future__ import annotations

import shutil
from pathlib import Path

from noseprint.models.demo_model import DemoShape, write_demo_model

MODEL_SHAPE = DemoShape(hidden=16, heads=2, kv_heads=1, ffn=32, layers=2, vocab_words=60)
MODEL_SEED = 1
OTHER_SEED = 2
"""The model served in the committed one's place by the test that must fail."""
SEED = "000102030405060708090a0b0c0d0e0f"
DONOR_SEED = 3
"""The model whose last layer the attacker appends (any other model: its fingerprint is what the bundle shows)."""
INERT_SCALE = 1e-9
"""The appended layer's output projections are multiplied by this: their committed factors round to zero."""
NEARBY_NOISE = 0.03
"""The served model near the committed one: every weight moved by this fraction of its tensor's spread. In float
it keeps 92 % of the toy's greedy tokens over 512 positions and all 8 of the fixture's (agreement passes), but
its top-5 log-probabilities deviate from the fixture's proven logits by 0.173 (the committed model: 0.085;
moved 1 %: 0.108): a light fine-tune, which greedy tokens alone cannot tell from the committed model."""
NEARBY_SEED = 5


def write_truncated_model(source: Path, folder: Path, layers: int) -> Path:
    """`source`'s first `layers` layers as a model of their own (tokenizer, embedding, norm and head kept)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(source))
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    shutil.copytree(source, folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_inert_layer_model(work: Path) -> tuple[Path, Path]:
    """(committed, served): the served model is the honest model's first layer; the committed one appends the
    donor's last layer with its attention output and FFN down projection scaled to nothing."""
    import torch
    from transformers import AutoModelForCausalLM

    honest = write_demo_model(work / "honest", MODEL_SHAPE, seed=MODEL_SEED)
    donor = write_demo_model(work / "donor", MODEL_SHAPE, seed=DONOR_SEED)
    served = write_truncated_model(honest, work / "served", MODEL_SHAPE.layers - 1)
    model = AutoModelForCausalLM.from_pretrained(str(honest))
    appended = AutoModelForCausalLM.from_pretrained(str(donor)).model.layers[-1]
    with torch.no_grad():
        appended.self_attn.o_proj.weight.mul_(INERT_SCALE)
        appended.mlp.down_proj.weight.mul_(INERT_SCALE)
    model.model.layers[-1] = appended
    committed = work / "committed"
    shutil.copytree(honest, committed)
    model.save_pretrained(str(committed), safe_serialization=True)
    return committed, served


def write_nearby_model(folder: Path, noise: float = NEARBY_NOISE) -> Path:
    """The honest model with every weight moved by `noise` of its spread (seeded): a model near the committed one,
    served in its place."""
    import torch
    from transformers import AutoModelForCausalLM

    source = write_demo_model(folder.with_name(folder.name + "-source"), MODEL_SHAPE, seed=MODEL_SEED)
    model = AutoModelForCausalLM.from_pretrained(str(source))
    generator = torch.Generator().manual_seed(NEARBY_SEED)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(noise * weight.std() * torch.randn(weight.shape, generator=generator))
    shutil.copytree(source, folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder
