"""The adaptive attacker: fine-tune a stolen base while pushing its fingerprint away from the original's.

The fingerprint is a differentiable function of a handful of tensors (16 embedding rows, the last two
layers and their norm scales), so an attacker who knows the method can add it to the loss:

    loss = LM loss + λ · max(0, similarity(fingerprint(model), fingerprint(original base)))

with the similarity the z-cosine, the ICS, or (default) the mean of both clamped terms: `compare` decides
on ICS between model folders and on z-cosine between bundles, so a thief must beat both. Sweeping λ and
the number of steps traces the price of evasion: the held-out LM loss paid (against the base, and
against the same fine-tune at λ = 0, the honest control) for each similarity reached. Where the verdict
turns "unrelated" on that curve is what the fingerprint's robustness claim has to state.

The fingerprint here is `circuits.graph.FingerprintCircuit`, the graph the proof proves, fed the live
`transformers` parameters (no blinding lines, float64): it equals `models.invariants` to rounding,
which `check_against_numpy` asserts before any attack runs.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import noseprint.encoder.release as release
import numpy as np
import torch
from noseprint.circuits.graph import FingerprintCircuit
from noseprint.encoder.network import load_encoder
from noseprint.lineage.verdict import UNRELATED
from noseprint.models.invariants import invariant_terms
from noseprint.models.weights import DEFAULT_TOKENS, read_model
from torch import nn
from tqdm import tqdm

from bench.attacks import degrade
from bench.zoo import corpus as zoo_corpus
from bench.zoo import train

SEQUENCE = 128
"""Token blocks as the zoo pretrained on (`bench.zoo.build.SEQUENCE`)."""
HELD_OUT_ROWS = 64
"""The last blocks of the pretraining corpus: never sampled by an attack, scored after it (the rows
`bench.zoo.build` reports as `eval_loss_pretrain`)."""
ATTACK_LR = 1e-3
"""The zoo's continued-pretraining rate: a fine-tune, not a retraining."""
ATTACK_BATCH = 16
ATTACK_WARMUP = 10
LAMBDAS = (0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)
STEPS = (50, 200)
QUICK_LAMBDAS = (0.0, 10.0, 1000.0)
QUICK_STEPS = (20,)
NUMPY_AGREEMENT = 1e-9
"""The differentiable terms must match `models.invariants` to cosine 1 - 1e-9 (float64 both sides)."""
SIMILARITY_TARGETS = ("z", "ics", "both")

LLAMA_ROLES = {
    "attn_norm": "input_layernorm.weight",
    "q": "self_attn.q_proj.weight",
    "k": "self_attn.k_proj.weight",
    "v": "self_attn.v_proj.weight",
    "o": "self_attn.o_proj.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "gate": "mlp.gate_proj.weight",
    "up": "mlp.up_proj.weight",
    "ffn_out": "mlp.down_proj.weight",
}
"""Layout roles -> parameter names inside one `transformers` LLaMA decoder layer (`models.architectures`)."""


# --------------------------------------------------------------------------------------------- data


@dataclass
class Corpus:
    """The zoo's text in the base's tokenizer: rows to fine-tune on and two scoring sets.

    The zoo bases have all but memorised their pretraining blocks (2,400 steps of 16 over ~2,400 blocks:
    base0 scores 2.40 on its own tail blocks, 2.69 on the same text cut at other block boundaries, 6.1 on
    unseen text), so `held_out` (the pretraining tail, never sampled by an attack) measures what the base
    knew and kept, and `other` (Debian docs: never seen by a base or an attack; the zoo's continued-pretraining
    derivative trained on it) how well it generalises."""

    train: torch.Tensor
    held_out: torch.Tensor
    other: torch.Tensor


PRETRAIN_DOCS_SCRIPT = (
    "import json, sys; from bench.zoo import build; json.dump(build.corpus.stdlib_documents(), sys.stdout)"
)
"""The pretraining documents as `bench.zoo.build` saw them: in an interpreter that imported what the build
imports. Libraries loaded here (transformers) add methods to stdlib classes, whose docstrings would
otherwise join the corpus and shift every block boundary."""
OTHER_CHARS = 300_000
"""Enough Debian text for the other-text rows (the corpus reader stops after this many characters)."""


def pretraining_texts() -> list[str]:
    root = Path(__file__).resolve().parents[2]
    found = subprocess.run(
        [sys.executable, "-c", PRETRAIN_DOCS_SCRIPT], cwd=root, capture_output=True, text=True, check=True
    )
    return [text for _, text in json.loads(found.stdout)]


def load_corpus(model_folder: Path) -> Corpus:
    """Every zoo base shares one tokenizer, so one corpus serves all; the held-out rows are the last ones."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_folder), local_files_only=True)
    rows = zoo_corpus.blocks(zoo_corpus.token_stream(tokenizer, pretraining_texts()), SEQUENCE)
    other = [text for _, text in zoo_corpus.debian_documents(OTHER_CHARS)]
    other_rows = zoo_corpus.blocks(zoo_corpus.token_stream(tokenizer, other), SEQUENCE)[:HELD_OUT_ROWS]
    return Corpus(rows[:-HELD_OUT_ROWS], rows[-HELD_OUT_ROWS:], other_rows)


def held_out_loss(model: nn.Module, corpus: Corpus) -> float:
    return train.eval_loss(model, corpus.held_out, rows=HELD_OUT_ROWS)


def other_loss(model: nn.Module, corpus: Corpus) -> float:
    return train.eval_loss(model, corpus.other, rows=HELD_OUT_ROWS)


def load_causal(folder: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()


def save_like(model: nn.Module, source: Path, target: Path) -> Path:
    """The live model as a folder with `source`'s config and tokenizer (same architecture, new weights)."""
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return degrade.write_model(state, source, target)


# --------------------------------------------------------------------------------------------- fingerprint


@dataclass
class Signature:
    """A model's fingerprint as tensors: the raw invariant terms (for ICS) and the standardised z."""

    terms: torch.Tensor
    z: torch.Tensor

    def detached(self) -> Signature:
        return Signature(self.terms.detach(), self.z.detach())


def standardise_flat(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean()
    return centred / centred.pow(2).mean().sqrt()


def standardise_terms(terms: torch.Tensor) -> torch.Tensor:
    """`models.invariants.standardise` in torch: per term (x - mean) / std."""
    centred = terms - terms.mean(dim=(-2, -1), keepdim=True)
    return centred / centred.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(), b.flatten()
    return a @ b / (a.norm() * b.norm())


def ics(a: Signature, b: Signature) -> torch.Tensor:
    """`models.invariants.invariant_cosine`, differentiable."""
    return cosine(standardise_terms(a.terms), standardise_terms(b.terms))


def z_cosine(a: Signature, b: Signature) -> torch.Tensor:
    """What `compare` reports as z-cosine, before z is fixed to 2^-12 steps."""
    return cosine(a.z, b.z)


def similarity(a: Signature, b: Signature, target: str) -> torch.Tensor:
    """The quantity an attacker drives: z-cosine (bundles), ICS (model folders) or their mean (both)."""
    if target == "z":
        return z_cosine(a, b)
    if target == "ics":
        return ics(a, b)
    return 0.5 * (z_cosine(a, b) + ics(a, b))


def evasion_penalty(now: Signature, reference: Signature, target: str) -> torch.Tensor:
    """What the evader minimises: each similarity clamped at zero. Independent models sit near zero, so
    pushing on toward -1 would cost LM loss and buy nothing (a verdict only asks "at most the threshold")."""
    measures = {"z": (z_cosine,), "ics": (ics,), "both": (z_cosine, ics)}[target]
    return sum(torch.relu(measure(now, reference)) for measure in measures) / len(measures)


def unit_rms(t: torch.Tensor) -> torch.Tensor:
    """What the circuit receives (`lineage.fingerprint.dequantised`, without the rounding)."""
    return t / t.pow(2).mean().sqrt()


class DifferentiableFingerprint:
    """The proven fingerprint graph applied to a live LLaMA model's parameters, gradients included.

    Tokens, fingerprinted layers and layout come from the model folder exactly as `noseprint fingerprint`
    reads them, so the signature is the one `compare` computes for a saved copy of the model."""

    def __init__(self, folder: Path, token_count: int = DEFAULT_TOKENS):
        weights = read_model(Path(folder), token_count, None, allow_pickle=False)
        self.token_ids = [token.id for token in weights.tokens]
        self.layer_indices = weights.layer_indices
        self.layout = weights.layout
        self.circuit = FingerprintCircuit(weights.layout, load_encoder(release.ENCODER)).double()
        self.folder_terms = invariant_terms(weights.embedding, weights.layers, list(weights.layout.layers))
        """The numpy reference (`models.invariants`) for the folder's own weights."""

    def tensors(self, model: nn.Module) -> list[torch.Tensor]:
        """The fingerprinted tensors in `layout.pieces()` order, float64 views of the live parameters."""
        named = {"embedding": model.get_input_embeddings().weight[self.token_ids]}
        decoder = model.model.layers
        for position, index in enumerate(self.layer_indices):
            parameters = dict(decoder[index].named_parameters())
            for role, name in LLAMA_ROLES.items():
                tensor = parameters[name]
                named[f"layer{position}.{role}"] = tensor.unsqueeze(0) if tensor.ndim == 1 else tensor
        return [named[name].double() for name in self.circuit.names]

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the fingerprint reads (whole embedding table: only its selected rows get gradients)."""
        chosen = [model.get_input_embeddings().weight]
        for index in self.layer_indices:
            chosen += list(model.model.layers[index].parameters())
        return chosen

    def signature(self, model: nn.Module) -> Signature:
        tensors = self.tensors(model)
        terms = torch.stack(self.circuit.invariant_terms(*tensors))
        z = standardise_flat(self.circuit(*[unit_rms(t) for t in tensors]))
        return Signature(terms, z)


def check_against_numpy(fingerprint: DifferentiableFingerprint, model: nn.Module) -> float:
    """Cosine between the differentiable terms of `model` and `models.invariants.invariant_terms` of the folder
    the fingerprint was made from, read by the checkpoint adapter: this checks the parameter mapping
    (`LLAMA_ROLES`) as well as the arithmetic, so `model` must be that folder's model, unchanged."""
    with torch.no_grad():
        ours = fingerprint.signature(model).terms.numpy().ravel()
    reference = fingerprint.folder_terms.ravel()
    agreement = float(ours @ reference / (np.linalg.norm(ours) * np.linalg.norm(reference)))
    if agreement < 1 - NUMPY_AGREEMENT:
        raise AssertionError(f"differentiable fingerprint disagrees with models.invariants: cosine {agreement}")
    return agreement


# --------------------------------------------------------------------------------------------- the attack


def tune(
    model: nn.Module,
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    corpus: Corpus,
    *,
    steps: int,
    seed: int,
    params: list[nn.Parameter] | None = None,
    desc: str,
) -> list[float]:
    """The zoo's own training loop (AdamW, warm-up, cosine decay) on the non-held-out rows."""
    return train.train_steps(
        model,
        loss_of_batch,
        corpus.train,
        steps=steps,
        lr=ATTACK_LR,
        seed=seed,
        batch=ATTACK_BATCH,
        warmup=ATTACK_WARMUP,
        params=params,
        desc=desc,
    )


def evasion_loss(
    model: nn.Module, fingerprint: DifferentiableFingerprint, reference: Signature, weight: float, target: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """LM loss + λ·(clamped) similarity to the original: λ = 0 is an honest fine-tune (the control)."""

    def loss(batch: torch.Tensor) -> torch.Tensor:
        lm = train.lm_loss(model, batch)
        if weight == 0:
            return lm
        return lm + weight * evasion_penalty(fingerprint.signature(model), reference, target)

    return loss


def evade(
    base: nn.Module,
    fingerprint: DifferentiableFingerprint,
    corpus: Corpus,
    *,
    weight: float,
    steps: int,
    seed: int,
    target: str = "both",
) -> nn.Module:
    """A copy of `base` fine-tuned with the evasion loss; `base` is left as it was."""
    if target not in SIMILARITY_TARGETS:
        raise ValueError(f"target must be one of {SIMILARITY_TARGETS}")
    with torch.no_grad():
        reference = fingerprint.signature(base).detached()
    model = copy.deepcopy(base)
    loss = evasion_loss(model, fingerprint, reference, weight, target)
    tune(model, loss, corpus, steps=steps, seed=seed, desc=f"evade λ={weight:g} {steps} steps")
    return model.eval()


@dataclass
class Point:
    """One attacked model, measured: its losses and its live (unrounded) similarity to the original."""

    held_out_loss: float
    other_loss: float
    live_z_cosine: float
    live_ics: float


def measure(model: nn.Module, fingerprint: DifferentiableFingerprint, reference: Signature, corpus: Corpus) -> Point:
    with torch.no_grad():
        now = fingerprint.signature(model)
        live_z, live_ics = float(z_cosine(now, reference)), float(ics(now, reference))
    return Point(held_out_loss(model, corpus), other_loss(model, corpus), live_z, live_ics)


def sweep(
    base_folder: Path,
    corpus: Corpus,
    workdir: Path,
    *,
    weights: tuple[float, ...] = LAMBDAS,
    step_counts: tuple[int, ...] = STEPS,
    seed: int = 0,
    target: str = "both",
) -> list[dict[str, Any]]:
    """Every (λ, steps) point against one base: the loss paid (vs the base and vs the λ = 0 control of the
    same length) and `compare`'s verdict between the attacked model and the original."""
    base_folder = Path(base_folder)
    model = load_causal(base_folder)
    fingerprint = DifferentiableFingerprint(base_folder)
    agreement = check_against_numpy(fingerprint, model)
    reference_folder = degrade.fingerprint_once(base_folder, workdir / f"{base_folder.name}-fingerprint")
    with torch.no_grad():
        reference = fingerprint.signature(model).detached()
    base = measure(model, fingerprint, reference, corpus)
    rows = []
    for steps, weight in tqdm(list(grid(step_counts, weights)), desc=f"adaptive {base_folder.name}"):
        attacked = evade(model, fingerprint, corpus, weight=weight, steps=steps, seed=seed, target=target)
        point = measure(attacked, fingerprint, reference, corpus)
        folder = save_like(attacked, base_folder, workdir / f"{base_folder.name}-evade-{weight:g}-{steps}")
        row = {"base": base_folder.name, "target": target, "lambda": weight, "steps": steps, **asdict(point)}
        row |= {"loss_vs_base": point.held_out_loss - base.held_out_loss, "base_held_out_loss": base.held_out_loss}
        row |= {"other_vs_base": point.other_loss - base.other_loss, "numpy_agreement": agreement}
        row |= degrade.similarity(reference_folder, folder)
        rows.append(row)
    return with_control(rows)


def grid(step_counts: tuple[int, ...], weights: tuple[float, ...]) -> Iterator[tuple[int, float]]:
    """λ = 0 first for each length, so its control exists before the others need it."""
    for steps in step_counts:
        for weight in sorted(set(weights) | {0.0}):
            yield steps, weight


def with_control(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`loss_vs_control`: held-out loss minus that of the honest (λ = 0) fine-tune of the same base and length."""
    control = {(r["base"], r["steps"]): r["held_out_loss"] for r in rows if r["lambda"] == 0}
    return [r | {"loss_vs_control": r["held_out_loss"] - control[(r["base"], r["steps"])]} for r in rows]


def unrelated_onset(rows: list[dict[str, Any]], key: str = "verdict") -> dict[str, Any] | None:
    """The cheapest point (least held-out loss paid against the control) that `key` calls unrelated."""
    evading = [r for r in rows if r[key] == UNRELATED]
    return min(evading, key=lambda r: r["loss_vs_control"]) if evading else None
