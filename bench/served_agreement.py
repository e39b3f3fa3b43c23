"""Issue 20: how often a served model's greedy tokens equal the committed model's (AGREEMENT_THRESHOLD's margins).

    python -m bench.served_agreement [--zoo bench/zoo/cache] [--prompts 64] [--length 8]

`verify-inference` passes when the proven greedy token equals the served one on at least AGREEMENT_THRESHOLD of
the positions. The threshold must sit below what an honest owner reaches (proofs compute in fixed point, the
served model in float: near ties flip) and above what any other model served in the committed one's place
reaches. Proving a zoo base takes hours per prompt here, so both sides are measured in float on random-token
prompts, as a challenge draws them, for every zoo base:

- honest, emulated: the base against itself computed as the circuits do, to first order: every weight tensor
  on the committed grid (unit RMS at 2^-INPUT_SCALE) and every hidden state a layer passes on perturbed by
  Gaussian noise of LAYER_ERROR of its RMS (the layer circuit's error measured on the proven toy);
- each model derived from it served in its place: fine-tunes (sft, cpt, dpo, lora), int8, 20 % pruning, and the
  function-preserving reparametrisations (these compute the same function: passing them is right);
- the other bases;

and the same for the toy LLaMA of the inference fixture (random weights): itself, itself with every weight moved
by a few per cent of its spread (`write_nearby_model`, the fixture's stand-in for a light fine-tune), another seed.

Vocabulary-changing derivations (vocab-ext, vocab-perm) are left out: their token ids mean other text, so a
challenge in token ids does not carry over.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from noseprint.circuits.settings import INPUT_SCALE
from noseprint.models.demo_model import write_demo_model
from noseprint.verifier.challenge_statistics import AGREEMENT_THRESHOLD, logprob_deviation, served_gap
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from testkit.inference_models import MODEL_SEED, MODEL_SHAPE, NEARBY_NOISE, OTHER_SEED, write_nearby_model

BASES = ("base0", "base1", "base2", "base3")
DERIVED = (
    "sft", "cpt", "dpo", "lora", "int8", "prune20", "permute_ffn_neurons", "permute_heads",
    "permute_value_units", "rotate_qk", "rotate_value_space", "scale_ffn_up", "scale_qk",
)  # fmt: skip
FINE_TUNES = ("sft", "cpt", "dpo", "lora")
LAYER_ERROR = 1.5e-2
"""Gaussian noise per layer output, relative to the residual stream's RMS, standing for the circuits' fixed point.
Calibrated on real proofs: the proven toy fixture's logits are 1.9 % (relative to their spread) off the float
model's; this noise gives 1.7-2.1 % on the same prompt (the layer circuit alone measured 9e-3, BENCHMARKS
"Challenge inference"; the head and norms add the rest)."""
TOP_K = 5
"""Log-probabilities an OpenAI-compatible API returns per position (its `logprobs` parameter allows up to 5)."""
TOY_NOISES = (0.01, NEARBY_NOISE, 0.05, 0.10)
"""How far the toy's nearby models move every weight (fractions of its spread)."""
EMULATION_SEEDS = 4
"""Independent draws of the emulated circuit noise per base."""


def load(folder: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float64).eval()


def logits(model: torch.nn.Module, prompts: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(prompts).logits.reshape(prompts.numel(), -1).numpy()


def top_k(served: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """What a served API returns: the k most likely tokens with their log-probabilities, per position."""
    lp = torch.log_softmax(torch.from_numpy(served), dim=1).numpy()
    order = np.argsort(-lp, axis=1)[:, :k]
    return [[(int(t), float(lp[i, t])) for t in row] for i, row in enumerate(order)]


def pair(committed: np.ndarray, served: np.ndarray, k: int) -> tuple[float, float, float]:
    """(greedy agreement, `logprob_deviation`, `served_gap`) of the committed model's logits against the served
    model's."""
    agreement = float(np.mean(committed.argmax(axis=1) == served.argmax(axis=1)))
    top = top_k(served, k)
    return agreement, logprob_deviation(committed, top) or 0.0, served_gap(top) or 0.0


def on_committed_grid(model: torch.nn.Module) -> torch.nn.Module:
    """Every weight tensor as the commitment holds it: at unit RMS, rounded to 2^-INPUT_SCALE, scaled back."""
    step = 1.0 / (1 << INPUT_SCALE)
    with torch.no_grad():
        for weight in model.parameters():
            rms = weight.pow(2).mean().sqrt()
            if rms > 0:
                weight.copy_(torch.round(weight / rms / step) * step * rms)
    return model


def with_layer_noise(model: torch.nn.Module, seed: int) -> list:
    """Hooks adding LAYER_ERROR of each hidden state's RMS as Gaussian noise after every decoder layer."""
    generator = torch.Generator().manual_seed(seed)

    def perturb(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        noise = torch.randn(hidden.shape, generator=generator, dtype=hidden.dtype)
        noisy = hidden + LAYER_ERROR * hidden.pow(2).mean(dim=-1, keepdim=True).sqrt() * noise
        return (noisy, *output[1:]) if isinstance(output, tuple) else noisy

    return [layer.register_forward_hook(perturb) for layer in model.model.layers]


def emulated(folder: Path, prompts: torch.Tensor, seed: int) -> np.ndarray:
    """The logits a proof of `folder`'s model would show, to first order (`on_committed_grid`, layer noise)."""
    model = on_committed_grid(load(folder))
    hooks = with_layer_noise(model, seed)
    try:
        return logits(model, prompts)
    finally:
        for hook in hooks:
            hook.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=Path("bench/zoo/cache"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--top", type=int, default=TOP_K, help="How many log-probabilities the served side gives.")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    bases = [name for name in BASES if (args.zoo / name).is_dir()]
    if not bases:
        raise SystemExit(f"no zoo bases under {args.zoo}: build them with python -m bench.zoo.build")
    vocab = load(args.zoo / bases[0]).config.vocab_size
    prompts = torch.randint(0, vocab, (args.prompts, args.length), generator=torch.Generator().manual_seed(0))
    served = {name: logits(load(args.zoo / name), prompts) for name in bases}
    print(f"{prompts.numel()} random-token positions per pair, top-{args.top} served; committed = a zoo base as "
          f"a proof computes it (emulated); AGREEMENT_THRESHOLD {AGREEMENT_THRESHOLD:.2f}")  # fmt: skip
    print(f"{'committed':<9} {'served':<30} {'greedy agreement':>17} {'log-prob deviation':>19} {'served gap':>11}")
    by_kind: dict[str, list[tuple[float, float]]] = {}

    def row(base: str, name: str, kind: str, committed: np.ndarray, answers: np.ndarray) -> None:
        agreement, deviation, gap = pair(committed, answers, args.top)
        by_kind.setdefault(kind, []).append((agreement, deviation))
        print(f"{base:<9} {name:<30} {agreement:>17.1%} {deviation:>19.3f} {gap:>11.3f}")

    for base in bases:
        proven = [emulated(args.zoo / base, prompts, seed) for seed in range(EMULATION_SEEDS)]
        for seed, committed in enumerate(proven):
            row(base, f"itself (noise seed {seed})", "honest (emulated)", committed, served[base])
        for kind in DERIVED:
            folder = args.zoo / f"{base}-{kind}"
            if folder.is_dir():
                row(
                    base,
                    folder.name,
                    "fine-tune" if kind in FINE_TUNES else kind,
                    proven[0],
                    logits(load(folder), prompts),
                )
        for other in bases:
            if other != base:
                row(base, other, "another base", proven[0], served[other])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        toy = write_demo_model(work / "toy", MODEL_SHAPE, seed=MODEL_SEED)
        toy_prompts = torch.randint(
            0, load(toy).config.vocab_size, prompts.shape, generator=torch.Generator().manual_seed(0)
        )
        toy_served = logits(load(toy), toy_prompts)
        toy_proven = [emulated(toy, toy_prompts, seed) for seed in range(EMULATION_SEEDS)]
        for seed, committed in enumerate(toy_proven):
            row("toy", f"itself (noise seed {seed})", "toy honest (emulated)", committed, toy_served)
        for noise in TOY_NOISES:
            nearby = write_nearby_model(work / f"nearby-{noise}", noise)
            row(
                "toy",
                f"weights moved {noise:.0%}",
                f"toy moved {noise:.0%}",
                toy_proven[0],
                logits(load(nearby), toy_prompts),
            )
        other = write_demo_model(work / "other", MODEL_SHAPE, seed=OTHER_SEED)
        row("toy", f"toy seed {OTHER_SEED}", "another toy", toy_proven[0], logits(load(other), toy_prompts))
    print("\nrange by kind:")
    for kind, values in by_kind.items():
        shares, deviations = [v[0] for v in values], [v[1] for v in values]
        print(f"  {kind:<22} agreement {min(shares):>6.1%} - {max(shares):<6.1%}  "
              f"deviation {min(deviations):.3f} - {max(deviations):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
