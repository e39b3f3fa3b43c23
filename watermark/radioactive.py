"""Radioactivity tests (Sander et al. 2024): was SUSPECT trained on text our watermarked model wrote?

A model fine-tuned on watermarked text learns the watermark's bias a little: after a window, it prefers that
window's green tokens (or high-r tokens). The tests score the suspect's own choices with the key.

Open model ("reading mode"): the suspect reads watermarked text once; at each position its argmax prediction is
scored with the window taken from the text. Windows seen earlier in the same text are skipped (after a repeat the
model copies what followed the first time: in-context copying, not learned bias), and pairs are scored once.

Closed model: the suspect answers prompts (a local model, or a transcript of an API's answers); its generated
tokens are scored. Windows that occur in the prompt are skipped (the answer may copy the prompt), pairs are scored
once, and only windows in a filter φ count: where the suspect saw watermarked text, the bias is strongest.
Supervised φ: every k-gram of the watermarked text it was trained on. Unsupervised φ: the most frequent k-grams
of the teacher's watermarked output.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from noseprint.watermark.detect import Pair, score_pairs, windows
from noseprint.watermark.schemes import Watermark
from noseprint.watermark.texts import Text

READ_BATCH = 16
DEFAULT_FILTER_TOP = 5000


def predictions(model: Any, contexts: list[list[int]], vocab: int, batch: int = READ_BATCH) -> list[np.ndarray]:
    """The suspect's argmax next token after each prefix of each context (one forward pass each; right padding,
    which a causal model never attends to from earlier positions)."""
    import torch

    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(contexts), batch):
            rows = contexts[start : start + batch]
            width = max(len(r) for r in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                mask[i, : len(r)] = 1
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :, :vocab]
            best = logits.argmax(dim=-1).numpy()
            out.extend(best[i, : len(r)] for i, r in enumerate(rows))
    return out


def reading_pairs(
    contexts: list[list[int]], starts: list[int], predicted: list[np.ndarray], k: int, skip_repeats: bool = True
) -> tuple[list[Pair], int]:
    """(window from the text, the suspect's prediction there) for every position scored, and how many positions
    were skipped because their window occurred earlier in the same text. Key-independent, so many keys (a null
    distribution) can be scored from one forward pass."""
    pairs: list[Pair] = []
    skipped = 0
    for context, start, guess in zip(contexts, starts, predicted, strict=True):
        seen: set[tuple[int, ...]] = set()
        for t, window in windows(context, start, k):
            if skip_repeats and window in seen:
                skipped += 1
                continue
            seen.add(window)
            pairs.append((window, int(guess[t - 1])))  # guess[t-1]: the suspect's prediction for position t
    return pairs, skipped


def reading_mode(
    model: Any,
    watermark: Watermark,
    texts: list[Text],
    dedup: bool = True,
    max_len: int | None = None,
    record: dict | None = None,
) -> dict:
    """Open-model test: score the suspect's predictions on the watermarked texts (dedup off: no skipping at all).
    With `record`, the suspect's predictions are put there, so a report lets anyone recompute the score."""
    contexts = [t.context[:max_len] if max_len else t.context for t in texts]
    predicted = predictions(model, contexts, watermark.params.vocab)
    if record is not None:
        record["predictions"] = [guess.tolist() for guess in predicted]
    return score_reading(watermark, texts, predicted, dedup)


def score_reading(watermark: Watermark, texts: list[Text], predicted: list[np.ndarray], dedup: bool = True) -> dict:
    """The reading-mode score of recorded predictions (each as long as its text's context, or truncated)."""
    contexts = [t.context[: len(guess)] for t, guess in zip(texts, predicted, strict=True)]
    starts = [len(t.prompt_tokens) for t in texts]
    pairs, skipped = reading_pairs(contexts, starts, predicted, watermark.params.k, dedup)
    return score_pairs(watermark, pairs, dedup) | {"mode": "open", "skipped_repeated_windows": skipped}


def kgrams(tokens: list[int], k: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]


def supervised_filter(texts: list[Text], k: int) -> set[tuple[int, ...]]:
    """φ: every window of the watermarked text (its generated part, with the windows that reach into it)."""
    found: set[tuple[int, ...]] = set()
    for text in texts:
        context = text.context
        found.update(window for _, window in windows(context, len(text.prompt_tokens), k))
    return found


def unsupervised_filter(texts: list[Text], k: int, top: int = DEFAULT_FILTER_TOP) -> set[tuple[int, ...]]:
    """φ: the `top` most frequent windows of the teacher's watermarked output."""
    counts: Counter[tuple[int, ...]] = Counter()
    for text in texts:
        counts.update(window for _, window in windows(text.context, len(text.prompt_tokens), k))
    return {window for window, _ in counts.most_common(top)}


def closed_mode(
    watermark: Watermark, answers: list[Text], phi: set[tuple[int, ...]] | None = None, dedup: bool = True
) -> dict:
    """Closed-model test: score the suspect's answers (prompt_tokens = the prompt, tokens = its answer)."""
    k = watermark.params.k
    pairs: list[Pair] = []
    skipped = Counter[str]()
    for answer in answers:
        in_prompt = set(kgrams(answer.prompt_tokens, k))
        context = answer.context
        for t, window in windows(context, len(answer.prompt_tokens), k):
            if window in in_prompt:
                skipped["window_in_prompt"] += 1
            elif phi is not None and window not in phi:
                skipped["window_not_in_filter"] += 1
            else:
                pairs.append((window, context[t]))
    return score_pairs(watermark, pairs, dedup) | {
        "mode": "closed",
        "filter_size": None if phi is None else len(phi),
        "skipped": dict(skipped),
    }
