"""What the watermark commands do, end to end, so the console script only wires arguments to these functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import noseprint.watermark.generate as gen
import noseprint.watermark.membership as membership
import noseprint.watermark.radioactive as radioactive
import noseprint.watermark.report as report
from noseprint.core.errors import UsageError
from noseprint.core.fileio import sha256_file
from noseprint.signing.keys import load_private
from noseprint.watermark.detect import detect
from noseprint.watermark.prf import WatermarkKey
from noseprint.watermark.schemes import DEFAULT_DELTA, DEFAULT_GAMMA, DEFAULT_K, KIRCHENBAUER, SchemeParams, Watermark
from noseprint.watermark.texts import Text, check_vocab, read_prompts, read_texts, write_texts

FILTERS = ("none", "supervised", "unsupervised")


@dataclass(frozen=True)
class ParamChoice:
    """Parameters the user typed (None: take the texts' recorded ones, else the paper's defaults)."""

    scheme: str | None = None
    k: int | None = None
    gamma: float | None = None
    delta: float | None = None

    def resolve(self, texts: list[Text], vocab: int | None, fallback_vocab: int | None = None) -> SchemeParams:
        """`vocab` overrides the texts' record; `fallback_vocab` (the suspect's) is used only without one."""
        recorded: dict = next((t.meta["watermark"] for t in texts if isinstance(t.meta.get("watermark"), dict)), {})
        vocab = vocab or recorded.get("vocab") or fallback_vocab
        if not vocab:
            raise UsageError("the vocabulary size is unknown: the texts record none (name a model or --vocab-size)")
        return SchemeParams(
            self.scheme or recorded.get("scheme", KIRCHENBAUER),
            int(vocab),
            self.k if self.k is not None else int(recorded.get("k", DEFAULT_K)),
            self.gamma if self.gamma is not None else float(recorded.get("gamma", DEFAULT_GAMMA)),
            self.delta if self.delta is not None else float(recorded.get("delta", DEFAULT_DELTA)),
        )


def generate_file(
    model_dir: Path, key: WatermarkKey, prompts_file: Path, out: Path, choice: ParamChoice, options: dict, force: bool
) -> dict:
    if out.exists() and not force:
        raise UsageError(f"{out} already exists (use --force to replace it)")
    model, tokenizer = gen.load_model(model_dir)
    params = choice.resolve([], gen.logits_size(model))
    texts = gen.generate_texts(model, tokenizer, read_prompts(prompts_file), Watermark(key, params), **options)
    write_texts(out, texts, force)
    return {
        "out": str(out),
        "texts": len(texts),
        "tokens": sum(len(t.tokens) for t in texts),
        "params": params.to_json(),
        "key_commitment": key.commitment,
    }


def _tokenizer_of(folder: Path | None):
    if folder is None:
        return None, None
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"no tokenizer in {folder} ({exc})") from None
    return tokenizer, lambda text: gen.encode(tokenizer, text)


def detect_file(
    texts_file: Path, key: WatermarkKey, choice: ParamChoice, dedup: bool, tokenizer_dir: Path | None, vocab: int | None
) -> tuple[dict, SchemeParams]:
    tokenizer, tokenize = _tokenizer_of(tokenizer_dir)
    texts = read_texts(texts_file, tokenize)
    params = choice.resolve(texts, vocab or (len(tokenizer) if tokenizer is not None else None))
    check_vocab(texts, params.vocab, str(texts_file))
    return report.finite(detect(Watermark(key, params), texts, dedup)), params  # type: ignore[return-value]


@dataclass
class RadioactiveRequest:
    suspect: Path
    key: WatermarkKey
    open_mode: bool
    texts: Path | None = None
    prompts: Path | None = None
    filter: str = "none"
    filter_texts: Path | None = None
    filter_top: int = radioactive.DEFAULT_FILTER_TOP
    dedup: bool = True
    mi_fresh: Path | None = None
    tokenizer: Path | None = None
    new_tokens: int = gen.DEFAULT_NEW_TOKENS
    temperature: float = gen.DEFAULT_TEMPERATURE
    seed: int = 0


def _check_request(r: RadioactiveRequest) -> None:
    if r.open_mode and r.texts is None:
        raise UsageError("--open reads watermarked text: give --texts W.jsonl")
    if not r.open_mode and r.prompts is None and r.suspect.suffix != ".jsonl":
        raise UsageError("--closed prompts the suspect: give --prompts FILE (or a JSONL transcript as SUSPECT)")
    if r.filter not in FILTERS:
        raise UsageError(f"--filter is one of {', '.join(FILTERS)}, not {r.filter!r}")
    if r.filter != "none" and (r.open_mode or r.filter_texts is None):
        raise UsageError("a filter applies to --closed and needs --filter-texts (the teacher's watermarked text)")
    if r.mi_fresh is not None and not r.open_mode:
        raise UsageError("the membership baseline (--mi-fresh) needs the suspect's weights: use it with --open")


def radioactive_test(
    r: RadioactiveRequest, choice: ParamChoice
) -> tuple[dict, SchemeParams, dict[str, str], dict[str, Any]]:
    """Run the open or closed test; returns (result, parameters, subject digests for a report, the record a
    report carries so its score can be recomputed: the suspect's predictions (open) or answers (closed))."""
    _check_request(r)
    transcript = not r.open_mode and r.suspect.suffix == ".jsonl" and r.suspect.is_file()
    model: Any = None
    if transcript:
        tokenizer, tokenize = _tokenizer_of(r.tokenizer)
        subjects = {"suspect-transcript": sha256_file(r.suspect)}
        vocab = len(tokenizer) if tokenizer is not None else None
    else:
        model, tokenizer = gen.load_model(r.suspect)
        tokenize = (lambda text: gen.encode(tokenizer, text)) if tokenizer is not None else None
        subjects = {"suspect-model": report.model_digest(r.suspect)}
        vocab = gen.logits_size(model)
    reference_file = r.texts or r.filter_texts
    reference = read_texts(reference_file, tokenize) if reference_file is not None else []
    params = choice.resolve(reference, None, vocab)
    if vocab is not None and vocab < params.vocab:
        raise UsageError(f"the suspect's vocabulary ({vocab}) is smaller than the watermark's ({params.vocab})")
    watermark = Watermark(r.key, params)
    if r.open_mode:
        assert r.texts is not None
        subjects["texts"] = sha256_file(r.texts)
        check_vocab(reference, params.vocab, str(r.texts))
        record: dict[str, Any] = {}
        result = radioactive.reading_mode(model, watermark, reference, r.dedup, gen.max_positions(model), record)
        if r.mi_fresh is not None:
            fresh = read_texts(r.mi_fresh, tokenize)
            subjects["fresh-texts"] = sha256_file(r.mi_fresh)
            result["membership"] = membership.membership_test(model, reference, fresh, params.vocab)
        return report.finite(result), params, subjects, record  # type: ignore[return-value]
    answers = _closed_answers(r, model, tokenize, transcript)
    if not transcript and r.prompts is not None:
        subjects["prompts"] = sha256_file(r.prompts)
    check_vocab(answers, params.vocab, "the suspect's answers")
    phi = None
    filter_info: dict[str, Any] = {"filter": r.filter}
    if not transcript:
        filter_info |= {"temperature": r.temperature, "new_tokens": r.new_tokens, "seed": r.seed}
    if r.filter != "none":
        assert r.filter_texts is not None
        subjects["filter-texts"] = sha256_file(r.filter_texts)
        if r.filter == "supervised":
            phi = radioactive.supervised_filter(reference, params.k)
        else:
            phi = radioactive.unsupervised_filter(reference, params.k, r.filter_top)
            filter_info["filter_top"] = r.filter_top
    result = radioactive.closed_mode(watermark, answers, phi, r.dedup) | filter_info
    record = {"answers": [{"prompt_tokens": a.prompt_tokens, "tokens": a.tokens} for a in answers]}
    return report.finite(result), params, subjects, record  # type: ignore[return-value]


def _closed_answers(r: RadioactiveRequest, model: Any, tokenize, transcript: bool) -> list[Text]:
    if transcript:
        return read_texts(r.suspect, tokenize)
    assert r.prompts is not None
    if tokenize is None:
        raise UsageError(f"{r.suspect} has no tokenizer to encode the prompts")
    prompts = read_prompts(r.prompts)
    prompt_ids = [tokenize(p) for p in prompts]
    generated = gen.generate(model, prompt_ids, None, r.new_tokens, r.temperature, r.seed)
    return [Text(ids, new, p) for p, ids, new in zip(prompts, prompt_ids, generated, strict=True)]


def signed_report(
    kind: str,
    key: WatermarkKey,
    params: SchemeParams,
    result: dict,
    subjects: dict,
    sign_key: Path,
    out: Path,
    force: bool,
    record: dict | None = None,
    model_commitment: str | None = None,
) -> str:
    """Build, sign and write a report (with `record`: what the suspect did, to recompute the score from; with
    `model_commitment`: the registered model it is evidence for); returns the signer's key id."""
    if out.exists() and not force:
        raise UsageError(f"{out} already exists (use --force to replace it)")
    private = load_private(sign_key)
    body = report.build_report(kind, key, params.to_json(), result, subjects, record, model_commitment)
    report.write_signed(out, report.sign_report(body, private), force)
    from noseprint.signing.keys import key_id

    return key_id(private.public_key())
