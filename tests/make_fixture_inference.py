"""Re-make the committed challenge-inference fixture `tests/data/inference-v1` (after a format or circuit change).

    python -m tests.make_fixture_inference

The model is the demo architecture at toy size (`MODEL_SHAPE`, seed `MODEL_SEED`: the tests rebuild it from
the seed to play the served model), proven under the committed development SRS `tests/data/dev-k14.srs`; the
challenge is one prompt of eight tokens from a fixed auditor's seed. What is committed: the bundle and the
inference proofs (with the challenge); the answers are made by the tests, from the models they rebuild.

`inert/` is the same for an attacker's model (`write_inert_layer_model`): the served model is one layer of the
honest model; the committed one appends a layer with another model's weights whose output factors are zero,
so it computes the served model exactly while its fingerprint shows the appended layer. Its proofs are honest
(they prove what was committed); the verifier must refuse them because the appended layer does nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from models.demo_model import DemoShape, write_demo_model

DATA = Path(__file__).with_name("data")
NAME = "inference-v1"
SRS = DATA / "dev-k14.srs"
SRS_LOGROWS = "14"
MODEL_SHAPE = DemoShape(hidden=16, heads=2, kv_heads=1, ffn=32, layers=2, vocab_words=60)
MODEL_SEED = 1
OTHER_SEED = 2
"""The model served in the committed one's place by the test that must fail."""
SEED = "000102030405060708090a0b0c0d0e0f"
INERT = "inert"
DONOR_SEED = 3
"""The model whose last layer the attacker appends (any other model: its fingerprint is what the bundle shows)."""
INERT_SCALE = 1e-9
"""The appended layer's output projections are multiplied by this: their committed factors round to zero."""


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


def cli(*args: str, home: Path) -> None:
    env = {**os.environ, "NOSEPRINT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "noseprint.cli", *args], check=True, env=env)


def prove_fixture(model: Path, home: Path, work: Path, target: Path) -> None:
    """Bundle, challenge and inference proofs of `model`, copied to `target` (replaced)."""
    work.mkdir(parents=True, exist_ok=True)
    bundle, challenge, proofs = work / "bundle", work / "challenge.json", work / "proofs"
    cli("prove", str(model), "--out", str(bundle), home=home)
    cli("challenge", str(bundle), "--seed", SEED, "--prompts", "1", "--out", str(challenge), home=home)
    cli("prove-inference", str(bundle), str(model), "--challenge", str(challenge), "--out", str(proofs), home=home)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copytree(bundle, target / "bundle")
    shutil.copytree(proofs, target / "proofs")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="noseprint-fixture-") as tmp:
        work = Path(tmp)
        cli("srs", "import", str(SRS), "--logrows", SRS_LOGROWS, home=work)
        model = write_demo_model(work / "model", MODEL_SHAPE, seed=MODEL_SEED)
        prove_fixture(model, work, work / "honest", DATA / NAME)
        committed, _ = write_inert_layer_model(work / "inert-models")
        prove_fixture(committed, work, work / "inert", DATA / NAME / INERT)


if __name__ == "__main__":
    main()
