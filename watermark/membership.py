"""The membership-inference baseline the radioactivity test is compared with (no watermark needed).

Carlini et al. 2021: text a model was trained on has lower loss, and calibrating the loss by the text's zlib
entropy (compressed length in bytes) removes much of what makes some texts easy for every model. The baseline
compares the suspect's loss/zlib ratio on the teacher's texts it may have been trained on with that on fresh
teacher texts it cannot have seen, by a one-sided two-sample Kolmogorov-Smirnov test: members' ratios lower.
It needs the suspect's weights (open mode) and the exact training texts; the watermark test needs neither.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
from noseprint.watermark.texts import Text
from scipy import stats

MIN_TOKENS = 2


def text_losses(model: Any, texts: list[Text], vocab: int) -> np.ndarray:
    """Mean next-token negative log-likelihood of each text's generated tokens (prompt given as context)."""
    import torch
    import torch.nn.functional as F

    losses = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([text.context])
            logits = model(input_ids=ids).logits[0, :-1, :vocab]
            targets = ids[0, 1:]
            nll = F.cross_entropy(logits, targets, reduction="none")
            start = max(len(text.prompt_tokens) - 1, 0)
            losses.append(float(nll[start:].mean()))
    return np.asarray(losses)


def zlib_entropy(text: Text) -> int:
    """Bytes of the zlib-compressed text (its ids when it has no string)."""
    body = text.text or " ".join(map(str, text.tokens))
    return len(zlib.compress(body.encode()))


def membership_test(model: Any, members: list[Text], fresh: list[Text], vocab: int) -> dict:
    """KS test of loss/zlib on suspected members against fresh texts; small p: the suspect saw the members."""
    members = [t for t in members if len(t.tokens) >= MIN_TOKENS]
    fresh = [t for t in fresh if len(t.tokens) >= MIN_TOKENS]
    ratio_m = text_losses(model, members, vocab) / np.asarray([zlib_entropy(t) for t in members])
    ratio_f = text_losses(model, fresh, vocab) / np.asarray([zlib_entropy(t) for t in fresh])
    test = stats.ks_2samp(ratio_m, ratio_f, alternative="greater")
    pvalue = float(test.pvalue)
    return {
        "members": len(members),
        "fresh": len(fresh),
        "ks_statistic": float(test.statistic),
        "log10_p": math.log10(pvalue) if pvalue > 0 else -math.inf,
        "median_ratio_members": float(np.median(ratio_m)),
        "median_ratio_fresh": float(np.median(ratio_f)),
    }
