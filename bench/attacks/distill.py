"""Knowledge distillation into fresh weights: copying a model's behaviour without any of its parameters.

A student of the same architecture, initialised at random, learns the teacher's next-token distribution
(KL divergence to the teacher's logits on the pretraining text). It may end up behaving like the
teacher, but it never held the teacher's weights, so a weight fingerprint is expected to call the pair
unrelated: this is the attack a weight fingerprint does not claim to catch, and the row says so with
numbers (the student's held-out loss next to its similarity to the teacher).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks import adaptive, degrade
from bench.zoo import train

STEPS = 600
QUICK_STEPS = 30
DISTILL_LR = 3e-3
"""The zoo's pretraining rate: the student starts from scratch."""
DISTILL_WARMUP = 50
TEMPERATURE = 1.0
STUDENT_SEED_OFFSET = 5000
"""Student initialisations stay clear of every zoo base's seed (1000 + i)."""


def distillation_loss(student: nn.Module, teacher: nn.Module, temperature: float = TEMPERATURE):
    """KL(teacher || student) over every next-token distribution of the batch, scaled by T² (Hinton et al.)."""

    def loss(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = F.log_softmax(teacher(input_ids=batch).logits / temperature, dim=-1)
        predicted = F.log_softmax(student(input_ids=batch).logits / temperature, dim=-1)
        vocab = predicted.shape[-1]
        kl = F.kl_div(predicted.reshape(-1, vocab), target.reshape(-1, vocab), log_target=True, reduction="batchmean")
        return kl * temperature**2

    return loss


def fresh_student(teacher: nn.Module, seed: int) -> nn.Module:
    """The teacher's architecture with new random weights."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(teacher.config)


def distill(
    teacher_folder: Path, corpus: adaptive.Corpus, workdir: Path, *, steps: int = STEPS, seed: int = 0
) -> dict[str, Any]:
    """Distil the teacher into a fresh student; the row holds both losses and the student's similarity to it."""
    teacher_folder = Path(teacher_folder)
    teacher = adaptive.load_causal(teacher_folder)
    student = fresh_student(teacher, STUDENT_SEED_OFFSET + seed)
    teacher_print = degrade.fingerprint_once(teacher_folder, workdir / f"{teacher_folder.name}-fingerprint")
    initial = adaptive.save_like(student, teacher_folder, workdir / f"{teacher_folder.name}-student-init")
    at_start = degrade.similarity(teacher_print, initial)
    curve = train.train_steps(
        student,
        distillation_loss(student, teacher),
        corpus.train,
        steps=steps,
        lr=DISTILL_LR,
        seed=seed,
        batch=adaptive.ATTACK_BATCH,
        warmup=DISTILL_WARMUP,
        desc=f"distil {teacher_folder.name}",
    )
    folder = adaptive.save_like(student, teacher_folder, workdir / f"{teacher_folder.name}-student")
    teacher_loss = adaptive.held_out_loss(teacher, corpus)
    student_loss = adaptive.held_out_loss(student, corpus)
    row = {"teacher": teacher_folder.name, "steps": steps, "final_kl": sum(curve[-10:]) / len(curve[-10:])}
    row |= {"teacher_held_out_loss": teacher_loss, "student_held_out_loss": student_loss}
    row |= {"loss_vs_teacher": student_loss - teacher_loss}
    row |= {"other_vs_teacher": adaptive.other_loss(student, corpus) - adaptive.other_loss(teacher, corpus)}
    row |= {"ics_at_init": at_start["ics"], "z_cosine_at_init": at_start["z_cosine"]}
    return row | degrade.similarity(teacher_print, folder)
