"""`noseprint query`'s back ends: ask a served model a challenge's prompts and record its answers.

Three ways to reach the model the owner serves, each returning `core.answers.Answers`:

- a local model folder: `transformers` in float32, one forward pass per prompt (what an owner's own serving
  stack, or an auditor holding an open-weight copy, computes);
- an OpenAI-compatible HTTP endpoint (vLLM's completions API): the prompt as token ids, `echo` with
  `logprobs`, so one request returns the distribution after every prompt position;
- a JSONL transcript of answers collected some other way, held to the challenge's prompts.

Every failure a stranger's server or file can cause (refused connection, time-out, an HTTP error, a body that
is not the API's JSON) becomes a `UsageError` with the reason, never a traceback.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from noseprint.core.answers import Answers, AnswersError, TopK, answers_errors
from noseprint.core.challenge import Challenge
from noseprint.core.errors import UsageError
from noseprint.core.fileio import parse_json_strict

DEFAULT_TOP_K = 5
"""Five log-probabilities per position: what OpenAI's completions API allows at most, enough to see how close
a disagreement was (a near-tie between the top two is where fixed-point and float inference may part)."""
HTTP_TIMEOUT = 60.0
MAX_RESPONSE_BYTES = 32 << 20
MAX_SOURCE_CHARS = 1000
TOKEN_ID_PREFIX = "token_id:"
"""vLLM's spelling of a token with `return_tokens_as_token_ids`: ids, not strings a tokenizer would re-read."""


def query(target: str, challenge: Challenge, top_k: int = DEFAULT_TOP_K, model: str | None = None) -> Answers:
    """The served model's answers to `challenge`: `target` is an http(s) URL, a .jsonl transcript or a folder."""
    if target.startswith(("http://", "https://")):
        answers = query_http(target, challenge, model, top_k)
    elif target.endswith(".jsonl") and Path(target).is_file():
        answers = query_transcript(Path(target), challenge)
    else:
        answers = query_local(Path(target), challenge, top_k)
    problems = answers_errors(answers, challenge)
    if problems:
        raise UsageError(f"the answers from {answers.source} do not fit the challenge: {problems[0]}")
    return answers


# a local model folder ---------------------------------------------------------------------------------------


def _load_local(folder: Path) -> Any:
    """The model in float32 and eval mode, from safetensors only (pickles run code) and nothing downloaded."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if not (folder / "config.json").is_file():
        raise UsageError(f"not a model folder (no config.json), an http(s) URL or a .jsonl transcript: {folder}")
    if not any(folder.glob("*.safetensors")):
        raise UsageError(f"{folder} has no *.safetensors weights (pickle checkpoints run code and are not loaded)")
    hf_logging.disable_progress_bar()  # a command speaks in its own lines only
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, use_safetensors=True, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UsageError(f"cannot load the model in {folder}: {str(exc)[:300]}") from None
    return model.eval()


def _check_fits(model: Any, challenge: Challenge, folder: Path) -> None:
    """A model must predict over the challenge's vocabulary and take prompts this long, or its answers mean nothing."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and challenge.length > limit:
        raise UsageError(
            f"the model in {folder} takes {limit} positions; the challenge's prompts have {challenge.length}"
        )
    width = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else None
    if width is not None and width != challenge.vocab:
        raise UsageError(
            f"the model in {folder} predicts over {width} tokens; the challenge's vocabulary has {challenge.vocab}"
        )


def query_local(folder: Path, challenge: Challenge, top_k: int = DEFAULT_TOP_K) -> Answers:
    """Greedy tokens (argmax of the logits) and top-k log-probabilities (log_softmax) after every position."""
    import torch

    model = _load_local(Path(folder))
    _check_fits(model, challenge, Path(folder))
    greedy: list[list[int]] = []
    top: list[list[TopK]] = []
    with torch.no_grad():
        for prompt in challenge.prompts:
            logits = model(torch.tensor([prompt], dtype=torch.long)).logits[0].float()
            greedy.append([int(t) for t in logits.argmax(dim=-1)])
            if top_k:
                values, ids = torch.log_softmax(logits, dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
                top.append([_pairs(i.tolist(), v.tolist()) for i, v in zip(ids, values, strict=True)])
    return Answers(challenge.digest(), _source(f"model:{folder}"), greedy, top if top_k else None)


def _pairs(ids: list[int], values: list[float]) -> TopK:
    return [(int(i), float(v)) for i, v in zip(ids, values, strict=True)]


def _source(text: str) -> str:
    return text[:MAX_SOURCE_CHARS]


# an OpenAI-compatible endpoint ------------------------------------------------------------------------------


def api_base(url: str) -> str:
    """The server's root: http(s) only (no file:, no ftp:), with a trailing slash or /v1 taken off."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"not an http(s) URL: {url!r}")
    base = url.rstrip("/")
    return base.removesuffix("/v1")


def _http_json(url: str, body: dict[str, Any] | None, timeout: float) -> Any:
    """GET (body None) or POST JSON; the answer's JSON, or a UsageError saying what went wrong."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace").strip()
        raise UsageError(f"the served model at {url} answered HTTP {exc.code}: {detail or exc.reason}") from None
    except urllib.error.URLError as exc:
        raise UsageError(f"cannot reach the served model at {url} ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:  # time-outs, resets, a broken HTTP answer
        raise UsageError(f"cannot reach the served model at {url} ({type(exc).__name__}: {exc})") from None
    if status != 200:
        raise UsageError(f"the served model at {url} answered HTTP {status}, not 200")
    if len(raw) > MAX_RESPONSE_BYTES:
        raise UsageError(f"the served model at {url} answered more than {MAX_RESPONSE_BYTES:,} bytes")
    try:
        return parse_json_strict(raw, allow_floats=True)
    except ValueError as exc:
        raise UsageError(f"the served model at {url} did not answer JSON ({exc})") from None


def served_model_name(base: str, timeout: float = HTTP_TIMEOUT) -> str:
    """The one model a server lists at /v1/models (the API needs its name); several must be chosen with --model."""
    listing = _http_json(f"{base}/v1/models", None, timeout)
    data = listing.get("data") if isinstance(listing, dict) else None
    names = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
    if len(names) != 1 or not isinstance(names[0], str):
        raise UsageError(f"{base}/v1/models lists {names or 'no models'}: name the served one with --model")
    return names[0]


def _token_id(key: object) -> int:
    if not isinstance(key, str) or not key.startswith(TOKEN_ID_PREFIX) or not key[len(TOKEN_ID_PREFIX) :].isdigit():
        raise ValueError(f"a token is spelt {str(key)[:40]!r}, not {TOKEN_ID_PREFIX}N (return_tokens_as_token_ids)")
    return int(key[len(TOKEN_ID_PREFIX) :])


def _position_top(entry: object, k: int) -> TopK:
    """One position's dict {"token_id:N": logprob}, most likely first, cut to k (vLLM adds the prompt's own token)."""
    if not isinstance(entry, dict) or not entry:
        raise ValueError("a position has no log-probabilities")
    pairs = []
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"a log-probability is {value!r}")
        pairs.append((_token_id(key), float(value)))
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))[:k]


def _completion_logprobs(answer: Any) -> dict[str, Any]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("no choices")
    logprobs = choices[0].get("logprobs")
    if not isinstance(logprobs, dict):
        raise ValueError("no logprobs in the first choice")
    return logprobs


def _prompt_answers(answer: Any, prompt: list[int], k: int) -> list[TopK]:
    """Per prompt position, its top-k: entry i+1 of top_logprobs is the distribution after position i."""
    logprobs = _completion_logprobs(answer)
    tops = logprobs.get("top_logprobs")
    if not isinstance(tops, list) or len(tops) != len(prompt) + 1:
        raise ValueError(f"top_logprobs is not a list of {len(prompt) + 1} entries (the prompt echoed, one generated)")
    tokens = logprobs.get("tokens")
    if tokens is not None:
        echoed = [_token_id(t) for t in tokens[: len(prompt)]] if isinstance(tokens, list) else None
        if echoed != prompt:
            raise ValueError("the echoed tokens are not the prompt's (a BOS added, or the ids re-tokenised?)")
    return [_position_top(entry, k) for entry in tops[1:]]


def query_http(
    url: str, challenge: Challenge, model: str | None = None, top_k: int = DEFAULT_TOP_K, timeout: float = HTTP_TIMEOUT
) -> Answers:
    """`POST {base}/v1/completions` once per prompt: ids in, max_tokens 1, echo, logprobs, temperature 0."""
    base = api_base(url)
    name = model or served_model_name(base, timeout)
    k = max(top_k, 1)  # the greedy token is read from the log-probabilities, so at least one is asked for
    greedy: list[list[int]] = []
    top: list[list[TopK]] = []
    for i, prompt in enumerate(challenge.prompts):
        body = {
            "model": name,
            "prompt": prompt,
            "max_tokens": 1,
            "echo": True,
            "logprobs": k,
            "temperature": 0,
            "return_tokens_as_token_ids": True,
        }
        answer = _http_json(f"{base}/v1/completions", body, timeout)
        try:
            positions = _prompt_answers(answer, prompt, k)
        except ValueError as exc:
            raise UsageError(f"the served model's answer to prompt {i} is not usable: {exc}") from None
        greedy.append([pairs[0][0] for pairs in positions])
        top.append(positions)
    return Answers(challenge.digest(), _source(f"{base} model {name}"), greedy, top if top_k else None)


# a transcript ------------------------------------------------------------------------------------------------


def _transcript_records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise UsageError(f"cannot read the transcript {path}: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = parse_json_strict(line, allow_floats=True)
        except ValueError as exc:
            raise UsageError(f"{path} line {number} is not JSON ({exc})") from None
        if not isinstance(record, dict) or not {"prompt", "greedy"} <= set(record):
            raise UsageError(f'{path} line {number} is not an object with "prompt" and "greedy"')
        records.append(record)
    return records


def _transcript_top(records: list[dict[str, Any]], path: Path) -> list[list[TopK]] | None:
    given = ["top_logprobs" in r for r in records]
    if not any(given):
        return None
    if not all(given):
        raise UsageError(f"{path}: some lines have top_logprobs and some do not")
    try:
        return [[[(p[0], p[1]) for p in pos] for pos in r["top_logprobs"]] for r in records]
    except (TypeError, IndexError, KeyError):
        raise UsageError(f"{path}: top_logprobs is not a list of [[id, logprob], ...] per position") from None


def query_transcript(path: Path, challenge: Challenge) -> Answers:
    """Answers recorded elsewhere, one line per prompt, in the challenge's order and with its exact prompts."""
    records = _transcript_records(Path(path))
    if len(records) != len(challenge.prompts):
        raise UsageError(f"{path} answers {len(records)} prompts; the challenge has {len(challenge.prompts)}")
    for i, (record, prompt) in enumerate(zip(records, challenge.prompts, strict=True)):
        if record["prompt"] != prompt:
            raise UsageError(f"{path} line {i + 1}: its prompt is not the challenge's prompt {i}")
    top = _transcript_top(records, Path(path))
    try:
        return Answers(challenge.digest(), _source(f"transcript:{path}"), [r["greedy"] for r in records], top)
    except AnswersError as exc:
        raise UsageError(f"{path} does not hold well-formed answers: {exc}") from None
