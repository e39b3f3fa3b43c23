"""Re-make the committed challenge-inference fixture `tests/data/inference-v1` (after a format or circuit change).

    python -m tests.make_fixture_inference [honest|inert|crafted|chunked ...]

The model is the demo architecture at toy size (`MODEL_SHAPE`, seed `MODEL_SEED`: the tests rebuild it from
the seed to play the served model), proven under the committed development SRS `tests/data/dev-k14.srs`; the
challenge is one prompt of eight tokens from a fixed auditor's seed. What is committed: the bundle and the
inference proofs (with the challenge); the answers are made by the tests, from the models they rebuild.

`inert/` is the same for an attacker's model (`write_inert_layer_model`): the served model is one layer of the
honest model; the committed one appends a layer with another model's weights whose output factors are zero,
so it computes the served model exactly while its fingerprint shows the appended layer. Its proofs are honest
(they prove what was committed); the verifier must refuse them because the appended layer does nothing.

`crafted/` is issue 20's opening attack: an independent model (seed `OTHER_SEED`) whose fingerprinted tensors are
tuned until its z is the honest model's (`write_crafted_model`, `bench.attacks.impersonate` with the fingerprint
term alone). Its bundle is valid and reads as the same base model as the honest one; its inference proofs are
honest about the crafted weights, so they cannot agree with the honest (victim's) model served.

`chunked/` is the honest model proven as a model too big for one proof per layer is: its bundle chunked finer
than a layer (two FFN blocks), its layers proven in parts (`core.whole_model.layer_parts`: the attention, then
one FFN part per block), the parts linked by the running residual's commitments.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from noseprint.models.demo_model import write_demo_model

from testkit.inference_models import (
    MODEL_SEED,
    MODEL_SHAPE,
    OTHER_SEED,
    SEED,
    write_inert_layer_model,
)

DATA = Path(__file__).with_name("data")
NAME = "inference-v1"
SRS = DATA / "dev-k14.srs"
SRS_LOGROWS = "14"
INERT = "inert"
CRAFTED = "crafted"
CHUNKED = "chunked"
CHUNKED_PROVE = ("--chunking", "1:16", "--n-tokens", "24")
"""`prove` for `chunked/`: one K/V head per chunk (the toy has one), 16 of the 32 FFN rows; 24 fingerprint tokens,
so that the chunk circuits need logrows 14, the inference circuits' minimum (at 16 tokens they fit 13)."""
CHUNKED_PART_WEIGHTS = 3 * 16 * MODEL_SHAPE.hidden
"""`prove-inference --part-weights` for `chunked/`: one FFN block (gate, up, down: 16 rows each) per part; the
attention (one block, as many weights) is one part."""
CRAFT_STEPS = 200
"""Gradient steps on the fingerprint term alone: z-cosine to the victim 0.99999999995 in under 2 s."""
CRAFT_CORPUS_ROWS, CRAFT_SEQUENCE = 32, 16
"""Random token rows for the training loop (the fingerprint term reads no text)."""


def write_crafted_model(work: Path) -> tuple[Path, Path]:
    """(crafted, victim): the independent model `OTHER_SEED` with its fingerprinted tensors (the fingerprint's
    embedding rows, the last two layers) tuned until its z is the victim's (`MODEL_SEED`)."""
    import math

    import torch

    from bench.attacks import adaptive, impersonate

    victim = write_demo_model(work / "victim", MODEL_SHAPE, seed=MODEL_SEED)
    source = write_demo_model(work / "independent", MODEL_SHAPE, seed=OTHER_SEED)
    fingerprint = adaptive.DifferentiableFingerprint(source)
    model = adaptive.load_causal(source)
    with torch.no_grad():
        target = adaptive.DifferentiableFingerprint(victim).signature(adaptive.load_causal(victim)).detached()
    rows = torch.randint(
        model.config.vocab_size, (CRAFT_CORPUS_ROWS, CRAFT_SEQUENCE), generator=torch.Generator().manual_seed(0)
    )
    corpus = adaptive.Corpus(rows, rows[:4], rows[4:8])
    forged = impersonate.forge(model, fingerprint, target, corpus, weight=math.inf, steps=CRAFT_STEPS, seed=0)
    return adaptive.save_like(forged, source, work / "crafted"), victim


def cli(*args: str, home: Path) -> None:
    env = {**os.environ, "NOSEPRINT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "noseprint.cli", *args], check=True, env=env)


def prove_fixture(
    model: Path, home: Path, work: Path, target: Path, args: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
) -> None:
    """Bundle, challenge and inference proofs of `model`, copied to `target` (replaced). `args`: extra options
    of `prove` and of `prove-inference`."""
    work.mkdir(parents=True, exist_ok=True)
    bundle, challenge, proofs = work / "bundle", work / "challenge.json", work / "proofs"
    cli("prove", str(model), "--out", str(bundle), *args[0], home=home)
    cli("challenge", str(bundle), "--seed", SEED, "--prompts", "1", "--out", str(challenge), home=home)
    cli("prove-inference", str(bundle), str(model), "--challenge", str(challenge), "--out", str(proofs), *args[1],
        home=home)  # fmt: skip
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copytree(bundle, target / "bundle")
    shutil.copytree(proofs, target / "proofs")


def main(parts: list[str]) -> None:
    """Re-make the named parts (`honest`, `inert`, `crafted`, `chunked`; all when none is named): each is proven
    alone, so one part can be added or re-made without changing the others' committed bytes."""
    makers = {
        "honest": lambda work: write_demo_model(work / "model", MODEL_SHAPE, seed=MODEL_SEED),
        INERT: lambda work: write_inert_layer_model(work / "inert-models")[0],
        CRAFTED: lambda work: write_crafted_model(work / "crafted-models")[0],
        CHUNKED: lambda work: write_demo_model(work / "chunked-model", MODEL_SHAPE, seed=MODEL_SEED),
    }
    nested = (INERT, CRAFTED, CHUNKED)
    targets = {"honest": DATA / NAME} | {sub: DATA / NAME / sub for sub in nested}
    extra_args = {CHUNKED: (CHUNKED_PROVE, ("--part-weights", str(CHUNKED_PART_WEIGHTS)))}
    unknown = sorted(set(parts) - set(makers))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}: choose from {sorted(makers)}")
    with tempfile.TemporaryDirectory(prefix="noseprint-fixture-") as tmp:
        work = Path(tmp)
        cli("srs", "import", str(SRS), "--logrows", SRS_LOGROWS, home=work)
        for part in parts or list(makers):
            inside = [targets[sub] for sub in nested] if part == "honest" else []
            kept = {path: work / f"kept-{path.name}" for path in inside if path.exists()}
            for path, copy in kept.items():  # the honest part's folder holds the others: keep them
                shutil.copytree(path, copy)
            prove_fixture(makers[part](work), work, work / part, targets[part], extra_args.get(part, ((), ())))
            for path, copy in kept.items():
                shutil.copytree(copy, path)


if __name__ == "__main__":
    main(sys.argv[1:])
