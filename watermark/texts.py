"""Text files the watermark commands read and write: prompt files (one a line) and JSONL generations.

A generation line is one JSON object:

    {"prompt": str, "prompt_tokens": [int], "text": str, "tokens": [int], "watermark": {params} | null,
     "key_commitment": str | null}

Token ids are kept because a tokenizer need not round-trip its own output; a line with only "text" (an API's
transcript) is tokenized by the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from noseprint.core.errors import UsageError
from noseprint.core.fileio import write_bytes_atomic

MAX_LINE_TOKENS = 1 << 20


@dataclass
class Text:
    prompt_tokens: list[int]
    tokens: list[int]
    prompt: str = ""
    text: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def context(self) -> list[int]:
        return self.prompt_tokens + self.tokens

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt,
            "prompt_tokens": self.prompt_tokens,
            "text": self.text,
            "tokens": self.tokens,
        } | self.meta


def read_prompts(path: Path) -> list[str]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UsageError(f"prompts file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"prompts file {path} is not readable text ({exc})") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise UsageError(f"prompts file {path} holds no prompt (one prompt a line)")
    return prompts


def _ids(value: object, where: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_LINE_TOKENS:
        raise UsageError(f"{where}: token ids must be a list of integers")
    if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value):
        raise UsageError(f"{where}: token ids must be non-negative integers")
    return list(value)


def parse_line(value: object, where: str, tokenize=None) -> Text:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: not a JSON object")
    prompt, text = value.get("prompt", ""), value.get("text", "")
    if not isinstance(prompt, str) or not isinstance(text, str):
        raise UsageError(f"{where}: prompt and text must be strings")
    meta = {k: v for k, v in value.items() if k not in ("prompt", "prompt_tokens", "text", "tokens")}
    if "tokens" in value:
        return Text(_ids(value.get("prompt_tokens", []), where), _ids(value["tokens"], where), prompt, text, meta)
    if tokenize is None:
        raise UsageError(f"{where}: no token ids; name the tokenizer (--tokenizer MODEL_DIR) to tokenize the text")
    return Text(tokenize(prompt) if prompt else [], tokenize(text), prompt, text, meta)


def read_texts(path: Path, tokenize=None) -> list[Text]:
    """Every line of a JSONL file; a bad line is a UsageError naming its number."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UsageError(f"texts file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"texts file {path} is not readable text ({exc})") from None
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {number} is not JSON ({exc})") from None
        texts.append(parse_line(value, f"{path} line {number}", tokenize))
    if not texts:
        raise UsageError(f"texts file {path} holds no line")
    return texts


def write_texts(path: Path, texts: list[Text], force: bool = False) -> None:
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to replace it)")
    body = "".join(json.dumps(t.to_json(), ensure_ascii=False) + "\n" for t in texts)
    write_bytes_atomic(path, body.encode())


def check_vocab(texts: list[Text], vocab: int, where: str) -> None:
    """Every id must index the vocabulary the watermark was defined on."""
    top = max((max(t.context, default=-1) for t in texts), default=-1)
    if top >= vocab:
        raise UsageError(f"{where}: token id {top} is outside the vocabulary of {vocab}")
