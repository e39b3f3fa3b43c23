"""Re-make the committed challenge-inference fixture `tests/data/inference-v1` (after a format or circuit change).

    python -m tests.make_fixture_inference

The model is the demo architecture at toy size (`MODEL_SHAPE`, seed `MODEL_SEED`: the tests rebuild it from
the seed to play the served model), proven under the committed development SRS `tests/data/dev-k14.srs`; the
challenge is one prompt of eight tokens from a fixed auditor's seed. What is committed: the bundle and the
inference proofs (with the challenge); the answers are made by the tests, from the models they rebuild.
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


def cli(*args: str, home: Path) -> None:
    env = {**os.environ, "NOSEPRINT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "noseprint.cli", *args], check=True, env=env)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="noseprint-fixture-") as tmp:
        work = Path(tmp)
        model = write_demo_model(work / "model", MODEL_SHAPE, seed=MODEL_SEED)
        cli("srs", "import", str(SRS), "--logrows", SRS_LOGROWS, home=work)
        bundle, challenge, proofs = work / "bundle", work / "challenge.json", work / "proofs"
        cli("prove", str(model), "--out", str(bundle), home=work)
        cli("challenge", str(bundle), "--seed", SEED, "--prompts", "1", "--out", str(challenge), home=work)
        cli("prove-inference", str(bundle), str(model), "--challenge", str(challenge), "--out", str(proofs), home=work)
        target = DATA / NAME
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        shutil.copytree(bundle, target / "bundle")
        shutil.copytree(proofs, target / "proofs")


if __name__ == "__main__":
    main()
