"""Training loops for the zoo: pretraining, and every derivative the lineage issue names.

All on CPU, seeded, small: the models have the default proof's shape (LLaMA,
hidden 64, grouped-query attention 4/2 heads, FFN 128, 4 layers), so every zoo
model can be proven by `noseprint prove` as it stands.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

ZOO_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)
WIDE_SHAPE = ZOO_SHAPE | dict(hidden_size=256, intermediate_size=512)
"""The zoo's shape four times wider, outside the 66-model zoo: every matrix row is a whole number of
K-quant super-blocks (256 values), so GGUF Q4_K and Q6_K apply to it (`python -m bench.gguf_zoo --wide N`)."""


def new_model(vocab_size: int, seed: int, special: dict[str, int], shape: dict = ZOO_SHAPE):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, **shape, **special)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def lm_loss(model, batch: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy; `mask` (same shape as batch) selects which targets count."""
    logits = model(input_ids=batch).logits[:, :-1]
    targets = batch[:, 1:]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    if mask is None:
        return losses.mean()
    weights = mask[:, 1:].reshape(-1).float()
    return (losses * weights).sum() / weights.sum().clamp(min=1)


def cosine_lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_steps(
    model: nn.Module,
    loss_of_batch: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    *,
    steps: int,
    lr: float,
    seed: int,
    batch: int = 16,
    warmup: int = 20,
    params: list[nn.Parameter] | None = None,
    desc: str = "train",
) -> list[float]:
    """AdamW with warm-up and cosine decay over random batches of `data` rows; returns the loss curve."""
    generator = torch.Generator().manual_seed(seed)
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    model.train()
    curve = []
    for step in (bar := tqdm(range(steps), desc=desc, leave=False)):
        for group in optimiser.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup)
        rows = torch.randint(len(data), (batch,), generator=generator)
        loss = loss_of_batch(data[rows])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        curve.append(float(loss))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(curve[-20:]) / len(curve[-20:]):.3f}")
    model.eval()
    return curve


@torch.no_grad()
def eval_loss(model, data: torch.Tensor, rows: int = 64) -> float:
    model.eval()
    return float(lm_loss(model, data[:rows]))


# ----------------------------------------------------------------------------- derivatives


def supervised_finetune(model, pairs: torch.Tensor, masks: torch.Tensor, *, steps: int, seed: int):
    """SFT: all weights, loss on the answer tokens only (`masks` marks them)."""
    tuned = copy.deepcopy(model)
    stacked = torch.cat([pairs, masks.long()], dim=1)
    width = pairs.shape[1]
    curve = train_steps(
        tuned,
        lambda b: lm_loss(tuned, b[:, :width], b[:, width:].bool()),
        stacked,
        steps=steps,
        lr=5e-4,
        seed=seed,
        desc="sft",
    )
    return tuned, curve


def continued_pretraining(model, data: torch.Tensor, *, steps: int, seed: int):
    tuned = copy.deepcopy(model)
    curve = train_steps(tuned, lambda b: lm_loss(tuned, b), data, steps=steps, lr=1e-3, seed=seed, desc="cpt")
    return tuned, curve


class LoRALinear(nn.Module):
    """y = W x + (alpha/r)·B·A x with W frozen; B starts at zero, as in Hu et al. (2021)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.a = nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + self.scale * (x @ self.a.T) @ self.b.T

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += self.scale * self.b @ self.a
        return self.base


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_merged(model, pairs: torch.Tensor, masks: torch.Tensor, *, steps: int, seed: int, rank: int = 8):
    """Train rank-8 adapters on every projection, then fold them into the weights (a merged LoRA)."""
    tuned = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    for p in tuned.parameters():
        p.requires_grad_(False)
    adapters = []
    for layer in tuned.model.layers:
        for block in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                if hasattr(block, name):
                    adapter = LoRALinear(getattr(block, name), rank, 2.0 * rank, generator)
                    setattr(block, name, adapter)
                    adapters.append((block, name, adapter))
    params = [p for _, _, a in adapters for p in (a.a, a.b)]
    width = pairs.shape[1]
    stacked = torch.cat([pairs, masks.long()], dim=1)
    curve = train_steps(
        tuned,
        lambda b: lm_loss(tuned, b[:, :width], b[:, width:].bool()),
        stacked,
        steps=steps,
        lr=3e-3,
        seed=seed,
        params=params,
        desc="lora",
    )
    for block, name, adapter in adapters:
        setattr(block, name, adapter.merged())
    for p in tuned.parameters():
        p.requires_grad_(True)
    return tuned, curve


def sequence_logprob(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, :-1]
    picked = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (picked * mask[:, 1:].float()).sum(-1)


def dpo_step(model, chosen, chosen_mask, rejected, rejected_mask, *, steps: int, seed: int, beta: float = 0.1):
    """Direct preference optimisation (Rafailov et al., 2023) against the frozen starting model."""
    reference = copy.deepcopy(model).eval()
    tuned = copy.deepcopy(model)
    width = chosen.shape[1]
    stacked = torch.cat([chosen, chosen_mask.long(), rejected, rejected_mask.long()], dim=1)

    def loss(b):
        c, cm, r, rm = (b[:, i * width : (i + 1) * width] for i in range(4))
        with torch.no_grad():
            ref = sequence_logprob(reference, c, cm) - sequence_logprob(reference, r, rm)
        pol = sequence_logprob(tuned, c, cm) - sequence_logprob(tuned, r, rm)
        return -F.logsigmoid(beta * (pol - ref)).mean()

    curve = train_steps(tuned, loss, stacked, steps=steps, lr=2e-4, seed=seed, batch=16, desc="dpo")
    return tuned, curve


@torch.no_grad()
def int8_roundtrip(model):
    """Symmetric per-output-channel int8 quantise-dequantise of every 2-D weight (embeddings included)."""
    quantised = copy.deepcopy(model)
    for p in quantised.parameters():
        if p.ndim == 2:
            scale = p.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
            p.copy_(torch.round(p / scale).clamp(-127, 127) * scale)
    return quantised


@torch.no_grad()
def magnitude_pruned(model, fraction: float = 0.2):
    """Zero the smallest `fraction` of each 2-D weight by magnitude (embeddings included)."""
    pruned = copy.deepcopy(model)
    for p in pruned.parameters():
        if p.ndim == 2:
            k = int(fraction * p.numel())
            threshold = p.abs().flatten().kthvalue(k).values
            p[p.abs() <= threshold] = 0
    return pruned


def extend_vocabulary(model, new_token_count: int, data: torch.Tensor, *, steps: int, seed: int):
    """Resize embeddings and head for `new_token_count` new tokens (rows start at the mean row), then train."""
    extended = copy.deepcopy(model)
    old = extended.config.vocab_size
    extended.resize_token_embeddings(old + new_token_count, mean_resizing=False)
    with torch.no_grad():
        for matrix in (extended.get_input_embeddings().weight, extended.get_output_embeddings().weight):
            matrix[old:] = matrix[:old].mean(0, keepdim=True)
    curve = train_steps(extended, lambda b: lm_loss(extended, b), data, steps=steps, lr=1e-3, seed=seed, desc="vocab+")
    return extended, curve
