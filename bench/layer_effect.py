"""Issue 20: how much each of a model's last layers changes its logits (the ablation check's floor).

    python -m bench.layer_effect [--zoo bench/zoo/cache] [--prompts 64] [--length 8] [--last 2]

`verify-inference` requires every fingerprinted layer to change the proven logits by at least MIN_LAYER_EFFECT
when it is removed (`verifier.challenge_statistics.layer_effect`: the median over positions of the change
relative to the logits' spread). This measures the same quantity in float on random-token prompts, as a
challenge draws them: for the toy LLaMA of the inference fixture (random weights, seeds 1 and 2), its inert-layer
attacker (the appended layer's output factors zero), and every zoo base and its fine-tunes (trained, 4 layers).
It prints, per model and removed layer, the effect and the share of greedy tokens that change.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from noseprint.models.demo_model import write_demo_model
from noseprint.verifier.challenge_statistics import MIN_LAYER_EFFECT, layer_effect
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from testkit.inference_models import MODEL_SHAPE, write_inert_layer_model

ZOO_MODELS = ("base0", "base1", "base2", "base3", "base0-sft", "base1-cpt", "base2-lora", "base3-dpo")
"""The zoo's four trained bases and one fine-tune of each (every kind of fine-tune leaves the layers' roles)."""


def logits_without(model, prompts: torch.Tensor, removed: int | None) -> np.ndarray:
    """The model's logits (positions x vocabulary) with layer `removed` left out (None: the whole model)."""
    layers = model.model.layers
    kept = [layer for index, layer in enumerate(layers) if index != removed]
    model.model.layers = torch.nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    try:
        with torch.no_grad():
            return model(prompts).logits.reshape(-1, model.config.vocab_size).double().numpy()
    finally:
        model.model.layers = layers
        model.config.num_hidden_layers = len(layers)
        for index, layer in enumerate(layers):
            layer.self_attn.layer_idx = index


def measure(folder: Path, prompts: int, length: int, last: int, seed: int = 0) -> list[tuple[int, float, float]]:
    """(layer, effect, greedy change) for each of the last `last` layers."""
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (prompts, length), generator=generator)
    whole = logits_without(model, tokens, None)
    count = model.config.num_hidden_layers
    rows = []
    for removed in range(count - last, count):
        without = logits_without(model, tokens, removed)
        changed = float(np.mean(without.argmax(axis=1) != whole.argmax(axis=1)))
        rows.append((removed, layer_effect(whole, without), changed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=Path("bench/zoo/cache"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--last", type=int, default=2, help="How many last layers (the fingerprinted ones).")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {f"toy seed {seed}": write_demo_model(work / f"toy{seed}", MODEL_SHAPE, seed=seed) for seed in (1, 2)}
        models["toy + inert layer"] = write_inert_layer_model(work / "inert")[0]
        models |= {name: args.zoo / name for name in ZOO_MODELS if (args.zoo / name).is_dir()}
        positions = args.prompts * args.length
        print(f"{positions} random-token positions per model; MIN_LAYER_EFFECT {MIN_LAYER_EFFECT}")
        print(f"{'model':<20} {'layer':>5} {'effect':>7} {'greedy changed':>15}")
        for name, folder in models.items():
            for layer, effect, changed in measure(folder, args.prompts, args.length, args.last):
                print(f"{name:<20} {layer:>5} {effect:>7.3f} {changed:>15.1%}")


if __name__ == "__main__":
    main()
