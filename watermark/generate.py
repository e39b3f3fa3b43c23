"""Loading a local causal LM and generating from it, watermarked or plain, in equal-length batches.

Prompts of one token length go through the model together (no padding, so positions are exact) with a KV cache;
each row's next token is chosen on the CPU by the watermark (`schemes.Watermark.next_token`) or plainly sampled.
The sampler's randomness is a seeded numpy stream, separate from the key: two runs with one seed give one text.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from noseprint.core.errors import UsageError
from noseprint.watermark.schemes import AARONSON, Watermark, sample
from noseprint.watermark.texts import Text

DEFAULT_NEW_TOKENS = 64
DEFAULT_TEMPERATURE = 1.0
BATCH = 32


def load_model(folder: Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a local Hugging Face folder; safetensors only (pickle checkpoints run code)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UsageError(f"not a model folder (no config.json): {folder}")
    if not any(folder.glob("*.safetensors")):
        raise UsageError(f"{folder} has no *.safetensors weights (pickle checkpoints are not loaded here)")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a command speaks in its own lines only

    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot load a causal language model from {folder}: {exc}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError):
        tokenizer = None
    return model.eval(), tokenizer


def logits_size(model: Any) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def max_positions(model: Any) -> int:
    config = model.config
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1024)


def cache_keyword(model: Any) -> str:
    """The KV cache's name: `cache` in transformers 5.x (where `past_key_values` warns), before that
    `past_key_values`; the same name is the output's attribute."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def encode(tokenizer: Any, text: str) -> list[int]:
    if tokenizer is None:
        raise UsageError("the model folder has no tokenizer; texts cannot be tokenized")
    return list(tokenizer.encode(text, add_special_tokens=False))


def generate(
    model: Any,
    prompts: list[list[int]],
    watermark: Watermark | None,
    new_tokens: int = DEFAULT_NEW_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    batch: int = BATCH,
) -> list[list[int]]:
    """The generated ids for each prompt (prompt excluded), in the prompts' order."""
    import torch

    if any(len(p) == 0 for p in prompts):
        raise UsageError("a prompt tokenizes to nothing")
    if watermark is not None and watermark.params.scheme == AARONSON and temperature <= 0:
        raise UsageError("Aaronson's scheme samples through r^(1/p): it needs a temperature above 0")
    longest = max(len(p) for p in prompts) + new_tokens
    if longest > max_positions(model):
        raise UsageError(f"prompt plus {new_tokens} new tokens is {longest}, past the model's {max_positions(model)}")
    rng = np.random.default_rng(seed)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        by_length[len(prompt)].append(index)
    outputs: list[list[int]] = [[] for _ in prompts]
    with torch.no_grad():
        for group in by_length.values():
            for start in range(0, len(group), batch):
                rows = group[start : start + batch]
                ids = torch.tensor([prompts[i] for i in rows])
                for row, new in zip(
                    rows, _generate_rows(model, ids, watermark, new_tokens, temperature, rng), strict=True
                ):
                    outputs[row] = new
    return outputs


def _generate_rows(model, ids, watermark: Watermark | None, new_tokens: int, temperature: float, rng) -> list:
    import torch

    contexts = ids.tolist()
    cache_name = cache_keyword(model)
    step = model(input_ids=ids, use_cache=True)
    for position in range(new_tokens):
        logits = step.logits[:, -1, :].float().numpy()
        chosen = []
        for row, context in enumerate(contexts):
            uniform = float(rng.random())
            if watermark is None:
                token = sample(logits[row].astype(np.float64), temperature, uniform)
            else:
                window = tuple(context[-watermark.params.k :])
                token = watermark.next_token(window, logits[row], temperature, uniform)
            context.append(token)
            chosen.append(token)
        if position + 1 < new_tokens:
            cache = {cache_name: getattr(step, cache_name)}
            step = model(input_ids=torch.tensor(chosen)[:, None], use_cache=True, **cache)
    return [context[ids.shape[1] :] for context in contexts]


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    watermark: Watermark | None,
    new_tokens: int = DEFAULT_NEW_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
) -> list[Text]:
    """Generate from text prompts; each Text records the parameters and key commitment (never the key)."""
    prompt_ids = [encode(tokenizer, p) for p in prompts]
    generated = generate(model, prompt_ids, watermark, new_tokens, temperature, seed)
    meta: dict = {"watermark": None, "key_commitment": None}
    if watermark is not None:
        meta = {"watermark": watermark.params.to_json(), "key_commitment": watermark.key.commitment}
    return [
        Text(ids, new, prompt, tokenizer.decode(new), dict(meta))
        for prompt, ids, new in zip(prompts, prompt_ids, generated, strict=True)
    ]
