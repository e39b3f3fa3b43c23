"""The served model's answers to a challenge: what the auditor saw, kept so the inference proof can be held to it.

    {"format": "noseprint-answers", "version": 1,
     "challenge_digest": SHA-256 hex of the challenge (core/challenge.py),
     "source": where the answers came from ("model:DIR", "http(s)://BASE model NAME", "transcript:FILE"),
     "greedy": [[argmax next token after position j, for each position j] for each prompt],
     "top": null | [[[[token id, log-probability], ... k pairs, most likely first] per position] per prompt]}

Position j's answer is the prediction after the prompt's first j+1 tokens, so a prompt of T tokens has T
answers (the last one is the token a greedy completion would generate). `top` is kept where the source gives
log-probabilities (a local model, an API with `logprobs`): it shows how close a disagreement was, which is what
a tolerance for fixed-point inference is measured on. The writer and reader sit side by side here, and every
malformed file is refused with `AnswersError`; `answers_errors` checks the answers fit a given challenge.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noseprint.core.challenge import MAX_LENGTH, MAX_PROMPTS, MAX_VOCAB, Challenge, is_hex
from noseprint.core.errors import NoseprintError
from noseprint.core.fileio import parse_json_strict, write_bytes_atomic

FORMAT = "noseprint-answers"
VERSION = 1
MAX_TOP_K = 100
LOGPROB_SLACK = 1e-4
"""A log-probability is at most 0; float rounding in log_softmax can leave the top one a hair above."""
GREEDY_TIE = 1e-6
"""The greedy token must be (within this) the most likely of the top-k: argmax and top-k may order exact ties
differently, nothing else may disagree."""

MAX_SOURCE_CHARS = 1000
"""The longest `source` an answers file may state."""

TopK = list[tuple[int, float]]


def answers_origin(source: str | None) -> str:
    """What kind of source `source` names, in words: the file states it, and a transcript is its maker's word
    (an owner can write one that agrees with the committed model), not a query anyone saw answered."""
    if source is None:
        return "not recorded"
    if source.startswith("transcript:"):
        return "a transcript: its maker's word, not a query"
    if source.startswith("model:"):
        return "a model folder run by whoever checked"
    if source.startswith(("http://", "https://")):
        return "a served API queried by whoever checked"
    return "unknown"


class AnswersError(NoseprintError):
    """The file is not well-formed answers (exit 1: the file is at fault)."""

    exit_code = 1


@dataclass(frozen=True)
class Answers:
    """Validated answers (the form only; `answers_errors` checks them against their challenge)."""

    challenge_digest: str
    source: str
    greedy: list[list[int]]
    top: list[list[TopK]] | None = None

    def __post_init__(self) -> None:
        problems = form_errors(self)
        if problems:
            raise AnswersError(f"not well-formed answers: {problems[0]}")

    def to_dict(self) -> dict[str, Any]:
        top = None if self.top is None else [[[[t, v] for t, v in pos] for pos in prompt] for prompt in self.top]
        return {
            "format": FORMAT,
            "version": VERSION,
            "challenge_digest": self.challenge_digest,
            "source": self.source,
            "greedy": self.greedy,
            "top": top,
        }

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()

    @classmethod
    def from_dict(cls, data: object) -> Answers:
        if not isinstance(data, dict):
            raise AnswersError("answers are a JSON object")
        if data.get("format") != FORMAT:
            raise AnswersError(f"not answers (format is {data.get('format')!r}, not {FORMAT!r})")
        if data.get("version") != VERSION:
            raise AnswersError(f"answers version {data.get('version')!r} is not {VERSION}")
        expected = {"format", "version", "challenge_digest", "source", "greedy", "top"}
        if set(data) != expected:
            extra, missing = sorted(set(data) - expected), sorted(expected - set(data))
            raise AnswersError(f"answers fields differ from version {VERSION}: extra {extra}, missing {missing}")
        return cls(data["challenge_digest"], data["source"], data["greedy"], _top_of_json(data["top"]))

    @classmethod
    def from_json(cls, text: bytes | str) -> Answers:
        """Strict JSON (finite numbers only, bounded size and depth), then `from_dict`."""
        try:
            data = parse_json_strict(text.encode() if isinstance(text, str) else text, allow_floats=True)
        except ValueError as exc:
            raise AnswersError(f"the answers are not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: Path) -> Answers:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise AnswersError(f"cannot read the answers {path}: {exc.strerror or exc}") from None
        return cls.from_json(data)

    def write(self, path: Path) -> Path:
        write_bytes_atomic(Path(path), self.to_json())
        return Path(path)


def _top_of_json(value: object) -> Any:
    """JSON's [id, logprob] pairs as tuples; anything unexpected is passed on for `form_errors` to name."""
    if not isinstance(value, list):
        return value
    try:
        return [[[_pair(p) for p in pos] for pos in prompt] for prompt in value]
    except (TypeError, ValueError):
        return "malformed"


def _pair(value: object) -> tuple[object, object]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError("not a pair")
    return value[0], value[1]


def _is_id(value: object) -> bool:
    return type(value) is int and 0 <= value < MAX_VOCAB


def _is_logprob(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value <= LOGPROB_SLACK


def _greedy_form_errors(greedy: object) -> list[str]:
    if not isinstance(greedy, list) or not 1 <= len(greedy) <= MAX_PROMPTS:
        return [f"greedy is not a list of 1 to {MAX_PROMPTS} prompts' answers"]
    for i, row in enumerate(greedy):
        if not isinstance(row, list) or not 1 <= len(row) <= MAX_LENGTH or not all(_is_id(t) for t in row):
            return [f"greedy answers of prompt {i} are not a list of token ids"]
    return []


def _position_errors(where: str, pairs: object, greedy: int) -> list[str]:
    if not isinstance(pairs, list) or not 1 <= len(pairs) <= MAX_TOP_K:
        return [f"top-k at {where} is not a list of 1 to {MAX_TOP_K} (token id, log-probability) pairs"]
    if not all(_is_id(t) and _is_logprob(v) for t, v in pairs):
        return [f"top-k at {where} holds a bad token id or log-probability (finite, at most 0)"]
    values = [float(v) for _, v in pairs]
    if len({t for t, _ in pairs}) != len(pairs) or values != sorted(values, reverse=True):
        return [f"top-k at {where} repeats a token or is not ordered most likely first"]
    best = dict(pairs).get(greedy)
    if best is None or best < values[0] - GREEDY_TIE:
        return [f"the greedy token at {where} is not the most likely one of its top-k"]
    return []


def _top_form_errors(top: object, greedy: list[list[int]]) -> list[str]:
    if top is None:
        return []
    if not isinstance(top, list) or len(top) != len(greedy):
        return ["top is not a list with one entry per prompt"]
    for i, (prompt, row) in enumerate(zip(top, greedy, strict=True)):
        if not isinstance(prompt, list) or len(prompt) != len(row):
            return [f"top-k of prompt {i} does not have one entry per position"]
        for j, pairs in enumerate(prompt):
            problems = _position_errors(f"prompt {i} position {j}", pairs, row[j])
            if problems:
                return problems
    return []


def form_errors(a: Answers) -> list[str]:
    """What makes answers malformed whatever their challenge; empty when well-formed."""
    if not is_hex(a.challenge_digest, 32):
        return ["challenge_digest is not 64 lower-case hex digits"]
    if not isinstance(a.source, str) or len(a.source) > MAX_SOURCE_CHARS:
        return [f"source is not a string of at most {MAX_SOURCE_CHARS} characters"]
    return _greedy_form_errors(a.greedy) or _top_form_errors(a.top, a.greedy)


def answers_errors(answers: Answers, challenge: Challenge) -> list[str]:
    """Why `answers` do not answer `challenge`: another challenge, another shape, tokens outside its vocabulary."""
    if answers.challenge_digest != challenge.digest():
        return [
            f"the answers are for challenge {answers.challenge_digest[:16]}…, not this one ({challenge.digest()[:16]}…)"
        ]
    errors = []
    if len(answers.greedy) != len(challenge.prompts):
        errors.append(f"{len(answers.greedy)} prompts answered, the challenge has {len(challenge.prompts)}")
    for i, row in enumerate(answers.greedy):
        if len(row) != challenge.length:
            errors.append(f"prompt {i}: {len(row)} positions answered, the challenge has {challenge.length}")
        if any(t >= challenge.vocab for t in row):
            errors.append(f"prompt {i}: a greedy token is outside the challenge's vocabulary of {challenge.vocab}")
    for i, prompt in enumerate(answers.top or []):
        if any(t >= challenge.vocab for pos in prompt for t, _ in pos):
            errors.append(f"prompt {i}: a top-k token is outside the challenge's vocabulary of {challenge.vocab}")
    return errors
