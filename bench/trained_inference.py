"""Issue 20: challenge inference on a *trained* model, with real proofs: the committed model served, and a light
fine-tune of it served in its place.

    python -m bench.trained_inference --out DIR [--srs tests/data/dev-k14.srs]     # about 40 min here

The test fixture's toy LLaMA has random weights: its logits are nearly flat (top-5 gaps 0.03 nats), unlike a
language model's. Here the same toy shape is trained (600 AdamW steps, seconds) on a peaked chain over its
vocabulary whose next token depends on the last two (logits A[previous] + B[the one before]: a language model
reads context, and a chain of the last token alone left the first layer idle, failing the ablation check), so
its next-token distributions are peaked as a trained model's (served top-5 gaps about 1.6 nats), then fine-tuned
lightly (60 steps on the chain mixed 30 % with another). The committed model is proven (`prove`,
`challenge` with the fixture's seed, one prompt of 8 tokens, `prove-inference`), both models are asked
(`query`), and `verify-inference` judges each. Printed: time, peak memory, and each report's agreement,
log-prob deviation, fitted temperature and layer effects.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from noseprint.models.demo_model import write_demo_model

from bench.layer_effect import measure
from bench.measure import run_measured
from testkit.inference_models import MODEL_SEED, MODEL_SHAPE, SEED

CHAIN_SHARPNESS = 3.0
"""Logit scale of the chain's random transition tables: peaked, as a language model's next tokens are."""
TRAIN_STEPS, TRAIN_LR = 600, 3e-3
TUNE_STEPS, TUNE_LR, TUNE_MIX = 60, 1e-3, 0.3
"""The fine-tune: a few steps on the chain mixed with another (a light tune: on the real proofs it keeps 7 of the
challenge's 8 greedy tokens, log-prob deviation 0.27)."""
BATCH, LENGTH = 32, 16


Chain = tuple[torch.Tensor, torch.Tensor]
"""A second-order chain: next-token logits A[previous token] + B[the token before it], times CHAIN_SHARPNESS."""


def chain(vocab: int, seed: int) -> Chain:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, vocab, generator=generator), torch.randn(vocab, vocab, generator=generator)


def mixed(base: Chain, other: Chain, share: float) -> Chain:
    """Logits moved `share` of the way to another chain's."""
    return (1 - share) * base[0] + share * other[0], (1 - share) * base[1] + share * other[1]


def sample(transitions: Chain, generator: torch.Generator) -> torch.Tensor:
    previous, before = transitions
    vocab = len(previous)
    rows = [torch.randint(vocab, (BATCH,), generator=generator) for _ in range(2)]
    for _ in range(LENGTH - 2):
        logits = CHAIN_SHARPNESS * (previous[rows[-1]] + before[rows[-2]])
        rows.append(torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1))
    return torch.stack(rows, 1)


def train(model, transitions: Chain, steps: int, lr: float, generator: torch.Generator) -> float:
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        ids = sample(transitions, generator)
        loss = model(ids, labels=ids).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def write_trained_models(root: Path) -> tuple[Path, Path]:
    """(base, fine-tune): the fixture's toy (seed MODEL_SEED) trained on chain 1, then tuned on chain 1 mixed
    with chain 2."""
    from transformers import AutoModelForCausalLM

    source = write_demo_model(root / "source", MODEL_SHAPE, seed=MODEL_SEED)
    model = AutoModelForCausalLM.from_pretrained(str(source))
    vocab, generator = model.config.vocab_size, torch.Generator().manual_seed(0)
    base_chain = chain(vocab, 1)
    print(f"trained: loss {train(model, base_chain, TRAIN_STEPS, TRAIN_LR, generator):.3f}")
    folders = []
    for name in ("base", "finetune"):
        if name == "finetune":
            tune_chain = mixed(base_chain, chain(vocab, 2), TUNE_MIX)
            print(f"fine-tuned: loss {train(model, tune_chain, TUNE_STEPS, TUNE_LR, generator):.3f}")
        shutil.copytree(source, root / name, dirs_exist_ok=True)
        model.save_pretrained(str(root / name), safe_serialization=True)
        folders.append(root / name)
    return folders[0], folders[1]


def cli(*args: str, env: dict) -> None:
    result, seconds, peak = run_measured([sys.executable, "-m", "noseprint.cli", *args], env=env)
    if result.returncode not in (0, 1):
        raise SystemExit(f"noseprint {args[0]} failed: {result.stderr[-2000:]}")
    print(f"noseprint {args[0]}: {seconds / 60:.1f} min, peak {peak:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="A new folder for the models, bundle and proofs.")
    parser.add_argument("--srs", type=Path, default=Path("tests/data/dev-k14.srs"))
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new folder")
    base, finetune = write_trained_models(args.out)
    for removed, effect, changed in measure(base, prompts=64, length=8, last=2):
        print(
            f"float, 512 random-token positions, without layer {removed}: effect {effect:.3f}, "
            f"greedy tokens changed {changed:.0%}"
        )
    env = {**os.environ, "NOSEPRINT_HOME": str(args.out / "home")}
    bundle, challenge, proofs = args.out / "bundle", args.out / "challenge.json", args.out / "proofs"
    cli("srs", "import", str(args.srs), "--logrows", "14", env=env)
    cli("prove", str(base), "--out", str(bundle), env=env)
    cli("challenge", str(bundle), "--seed", SEED, "--prompts", "1", "--out", str(challenge), env=env)
    cli("prove-inference", str(bundle), str(base), "--challenge", str(challenge), "--out", str(proofs), env=env)
    for name, model in (("committed model", base), ("its fine-tune", finetune)):
        answers, report = args.out / f"answers-{model.name}.json", args.out / f"report-{model.name}.json"
        cli("query", str(model), "--challenge", str(challenge), "--out", str(answers), env=env)
        result, seconds, _ = run_measured([sys.executable, "-m", "noseprint.cli", "verify-inference", str(bundle),
                                           str(proofs), "--answers", str(answers), "--json"], env=env)  # fmt: skip
        report.write_text(result.stdout)
        r = json.loads(result.stdout)
        verdict = "PASS" if r["valid"] else f"FAIL {r['failed_check']}"
        print(f"{name} served: {verdict} in {seconds:.0f} s; agreement {r['agreement']}, log-prob deviation "
              f"{r['logprob_deviation']}, temperature {r['logprob_temperature']}, served gap {r['served_gap']}, "
              f"layer effects {r['layer_effects']}")  # fmt: skip


if __name__ == "__main__":
    main()
