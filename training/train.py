"""Train an invariant encoder the way HuRef does, at noseprint's sizes, on CPU.

    python -m training.train --kind cnn --out encoder/weights/candidates [--steps 1500 --seed 0]

Data are synthetic products shaped like the invariant terms, X·A·Bᵀ·Xᵀ with X an
n x d "embedding" and A, B d x h "weights" (HuRef's `GenDataset`, at n = 16,
d = 64, h = 32):
- anchor: fresh random X, A, B for each of the six terms;
- positive: the same with noise on the weights (0.1) and on X (0.4, HuRef's default),
  standing in for fine-tuning;
- negative: an independent draw.
Real trained models share structure that random draws do not (a term's diagonal
stands out: a token attends to, and copies, itself), so with probability one half
each product also gets a shared `alpha·X·Xᵀ` part; the contrastive loss then
teaches the encoder to look past it.

Loss (HuRef): 1.3·(1 - cos(a, p)) + 0.7·|cos(a, n)| on centred outputs (z is standardised
before use, so this is the z-cosine `compare` reports; on raw outputs the CNN collapsed to
one direction: every cosine 1, loss stuck at 0.7), plus a discriminator
that pushes the standardised outputs towards N(0, I), trained in alternation.
Deterministic from `--seed` (torch's CPU generator, one thread).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from noseprint.encoder.network import TERMS, EncoderConfig, InvariantEncoder, save_encoder
from torch import nn
from tqdm import tqdm

TOKENS, HIDDEN, INNER = 16, 64, 32


def standardise(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    return centred / centred.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp(min=1e-9)


def products(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """X·A·Bᵀ·Xᵀ + shared·X·Xᵀ per (batch, term), standardised like the circuit does."""
    core = x @ a @ b.transpose(-1, -2) @ x.transpose(-1, -2)
    gram = x @ x.transpose(-1, -2)
    scale = core.std(dim=(-2, -1), keepdim=True) / gram.std(dim=(-2, -1), keepdim=True)
    return standardise(core + shared[..., None, None] * scale * gram)


def triplet(batch: int, g: torch.Generator, x_noise: float, w_noise: float):
    shape = (batch, TERMS)
    x = torch.randn(*shape, TOKENS, HIDDEN, generator=g)
    a = torch.randn(*shape, HIDDEN, INNER, generator=g)
    b = torch.randn(*shape, HIDDEN, INNER, generator=g)
    shared = (torch.rand(batch, 1, generator=g) < 0.5) * torch.rand(*shape, generator=g) * 3
    anchor = products(x, a, b, shared)
    noisy = lambda t, s: t + s * torch.randn(t.shape, generator=g)  # noqa: E731
    positive = products(noisy(x, x_noise), noisy(a, w_noise), noisy(b, w_noise), shared)
    xn = torch.randn(*shape, TOKENS, HIDDEN, generator=g)
    an, bn = torch.randn(*shape, HIDDEN, INNER, generator=g), torch.randn(*shape, HIDDEN, INNER, generator=g)
    negative = products(xn, an, bn, shared.roll(1, 0))
    return anchor, positive, negative


def standardise_rows(z: torch.Tensor) -> torch.Tensor:
    centred = z - z.mean(-1, keepdim=True)
    return centred / centred.std(-1, keepdim=True).clamp(min=1e-9)


def discriminator(z_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(z_dim, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1))


def train(config: EncoderConfig, steps: int, seed: int, batch: int = 32, x_noise: float = 0.4, w_noise: float = 0.1):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    encoder = InvariantEncoder(config)
    critic = discriminator(config.z_dim)
    opt_e = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_e, steps, eta_min=1e-5)
    history = []
    for step in (bar := tqdm(range(steps), desc=f"train {config.kind} encoder")):
        anchor, positive, negative = triplet(batch, g, x_noise, w_noise)
        # discriminator: real N(0, I) samples against standardised encodings
        with torch.no_grad():
            fake = standardise_rows(encoder(anchor))
        real = torch.randn(batch, config.z_dim, generator=g)
        d_loss = F.binary_cross_entropy_with_logits(critic(real), torch.ones(batch, 1)) + (
            F.binary_cross_entropy_with_logits(critic(fake), torch.zeros(batch, 1))
        )
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # encoder: contrastive + fool the discriminator
        # cosines of centred outputs: z is standardised before use, so this is the z-cosine compare reports
        za, zp, zn = standardise_rows(encoder(torch.cat([anchor, positive, negative]))).split(batch)
        contrastive = (1.3 * (1 - F.cosine_similarity(za, zp)) + 0.7 * F.cosine_similarity(za, zn).abs()).mean()
        adversarial = F.binary_cross_entropy_with_logits(critic(za), torch.ones(batch, 1))
        loss = contrastive + 0.5 * adversarial
        opt_e.zero_grad()
        loss.backward()
        opt_e.step()
        sched.step()
        history.append((contrastive.item(), adversarial.item(), d_loss.item()))
        if step % 50 == 0:
            bar.set_postfix(contrastive=f"{contrastive:.3f}", adversarial=f"{adversarial:.3f}")
    return encoder.eval(), history


@torch.no_grad()
def synthetic_separation(encoder: nn.Module, seed: int, count: int = 256) -> dict[str, float]:
    """Held-out synthetic triplets: mean positive and negative cosine of z."""
    g = torch.Generator().manual_seed(10_000 + seed)
    anchor, positive, negative = triplet(count, g, 0.4, 0.1)
    za, zp, zn = (standardise_rows(encoder(t)) for t in (anchor, positive, negative))
    return {
        "positive_cosine": float(F.cosine_similarity(za, zp).mean()),
        "negative_cosine_abs": float(F.cosine_similarity(za, zn).abs().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["cnn", "meanpool"], default="cnn")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("encoder/weights/candidates"))
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: the same float reductions, so the same weights, on every machine
    config = EncoderConfig(kind=args.kind, channels=args.channels, grid=args.grid, z_dim=args.z_dim, seed=args.seed)
    started = time.time()
    encoder, history = train(config, args.steps, args.seed)
    name = args.name or args.kind
    save_encoder(encoder, args.out, name)
    report = {
        "seconds": round(time.time() - started, 1),
        "steps": args.steps,
        "seed": args.seed,
        "final_contrastive": sum(h[0] for h in history[-50:]) / 50,
        **synthetic_separation(encoder, args.seed),
    }
    (args.out / f"{name}.train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
