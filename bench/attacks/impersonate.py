"""The impersonator: make an independent model carry someone else's fingerprint.

The converse of evasion. A forger holds base B and wants its fingerprint to read as target A's (to
claim A's lineage, or to frame A's owner), while B keeps working as a language model:

    loss = LM loss(B) - λ · z-cosine(fingerprint(B), fingerprint(A))

and, as λ -> ∞, the fingerprint term alone, trained only on the tensors the fingerprint reads (16
embedding rows, the last two layers). z is the target because it is what a bundle publishes and the
registry searches by; ICS and `compare`'s verdict (ICS between model folders) are recorded as well,
with the similarity the forgery keeps to its own origin B.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from bench.attacks import adaptive, degrade
from bench.zoo import train

FINGERPRINT_ONLY = math.inf
"""λ -> ∞: no LM loss at all, only the fingerprinted tensors move."""
LAMBDAS = (0.1, 1.0, 10.0, 100.0, FINGERPRINT_ONLY)
STEPS = 200
QUICK_LAMBDAS = (1.0, FINGERPRINT_ONLY)
QUICK_STEPS = 20
AIMS = ("z", "both")
"""The sweep pulls z (what bundles and the registry compare); one more λ -> ∞ row pulls z and ICS together,
which is what it takes to fool `compare` between model folders too."""


def forgery_loss(
    model: nn.Module,
    fingerprint: adaptive.DifferentiableFingerprint,
    target: adaptive.Signature,
    weight: float,
    aim: str,
):
    """LM loss - λ·similarity to the target; the similarity alone when λ is infinite."""

    def loss(batch: torch.Tensor) -> torch.Tensor:
        pull = adaptive.similarity(fingerprint.signature(model), target, aim)
        if math.isinf(weight):
            return -pull
        return train.lm_loss(model, batch) - weight * pull

    return loss


def forge(
    source: nn.Module,
    fingerprint: adaptive.DifferentiableFingerprint,
    target: adaptive.Signature,
    corpus: adaptive.Corpus,
    *,
    weight: float,
    steps: int,
    seed: int,
    aim: str = "z",
) -> nn.Module:
    """A copy of `source` pulled toward `target`'s fingerprint; `source` is left as it was."""
    model = copy.deepcopy(source)
    params = fingerprint.parameters(model) if math.isinf(weight) else None
    loss = forgery_loss(model, fingerprint, target, weight, aim)
    adaptive.tune(model, loss, corpus, steps=steps, seed=seed, params=params, desc=f"forge λ={weight:g}")
    return model.eval()


def sweep(
    source_folder: Path,
    target_folder: Path,
    corpus: adaptive.Corpus,
    workdir: Path,
    *,
    weights: tuple[float, ...] = LAMBDAS,
    steps: int = STEPS,
    seed: int = 0,
    aims: tuple[str, ...] = AIMS,
) -> list[dict[str, Any]]:
    """One row per λ (aiming at z), then λ -> ∞ for each further aim: the held-out loss the forgery paid,
    and how far it now reads as the target (and still as its own base)."""
    source_folder, target_folder = Path(source_folder), Path(target_folder)
    source = adaptive.load_causal(source_folder)
    fingerprint = adaptive.DifferentiableFingerprint(source_folder)
    with torch.no_grad():
        target_model = adaptive.load_causal(target_folder)
        target = adaptive.DifferentiableFingerprint(target_folder).signature(target_model).detached()
        own = fingerprint.signature(source).detached()
    prints = {
        "target": degrade.fingerprint_once(target_folder, workdir / f"{target_folder.name}-fingerprint"),
        "source": degrade.fingerprint_once(source_folder, workdir / f"{source_folder.name}-fingerprint"),
    }
    start = adaptive.measure(source, fingerprint, target, corpus)
    rows = []
    runs = [(weight, aims[0]) for weight in weights] + [(FINGERPRINT_ONLY, aim) for aim in aims[1:]]
    for weight, aim in tqdm(runs, desc=f"impersonate {target_folder.name} with {source_folder.name}"):
        forged = forge(source, fingerprint, target, corpus, weight=weight, steps=steps, seed=seed, aim=aim)
        point = adaptive.measure(forged, fingerprint, target, corpus)
        name = f"{source_folder.name}-as-{target_folder.name}-{weight:g}-{aim}"
        folder = adaptive.save_like(forged, source_folder, workdir / name)
        with torch.no_grad():
            kept = float(adaptive.z_cosine(fingerprint.signature(forged), own))
        row = {"source": source_folder.name, "target": target_folder.name, "lambda": weight, "aim": aim}
        row |= {"steps": steps, "held_out_loss": point.held_out_loss}
        row |= {"loss_vs_source": point.held_out_loss - start.held_out_loss}
        row |= {"other_vs_source": point.other_loss - start.other_loss, "start_z_cosine": start.live_z_cosine}
        row |= {"start_ics": start.live_ics, "z_cosine_to_source": kept}
        row |= degrade.similarity(prints["target"], folder)
        row["verdict_to_source"] = degrade.similarity(prints["source"], folder)["verdict"]
        rows.append(row)
    return rows
