"""Watermarks and radioactivity (issue 22): the PRF against its specification, the statistics against closed forms,
watermarked generation from a tiny model detected and plain text not, deduplication, the radioactivity tests on a
student trained on watermarked text, signed reports (and their forgeries), and reports as registry evidence."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import shutil
import stat
from fractions import Fraction
from pathlib import Path

import noseprint.watermark.generate as gen
import numpy as np
import pytest
import torch
from noseprint.core.errors import UsageError
from noseprint.watermark.detect import Scorer, detect, log10_binomial_tail, log10_gamma_tail
from noseprint.watermark.prf import (
    WatermarkKey,
    green_mask,
    is_green,
    key_from_json,
    load_key,
    new_key,
    uniform_r,
    write_key,
)
from noseprint.watermark.radioactive import closed_mode, reading_mode, supervised_filter, unsupervised_filter
from noseprint.watermark.schemes import AARONSON, KIRCHENBAUER, SchemeParams, Watermark
from noseprint.watermark.texts import Text, read_texts, write_texts
from scipy import special, stats
from typer.testing import CliRunner

from noseprint.cli import app
from tests.conftest import save_tiny, tiny_llama

VOCAB = 303  # tiny_llama's and build_tokenizer(300)'s
PROMPTS = ["the cat sat on", "we have been", "what is the time", "people are here", "she said that", "in the end"]
BIG_DELTA = 6.0
NEW_TOKENS = 40
FIXED_KEY = WatermarkKey(bytes(range(32)), bytes(16))
NOT_FOUND = -3.0
"""log10 p above which nothing is found: keys are random, so p is uniform and a check fails by chance 1 in 1,000."""


def cli(*args: str) -> tuple[int, dict | str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "1000"})  # rich wraps at the width
    assert "Traceback" not in result.output
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.output.replace("\n", "")  # rich wraps long lines


# ----------------------------------------------------------------------------- the PRF


def reference_u64(key: WatermarkKey, scheme: str, window: tuple[int, ...], vocab: int) -> list[int]:
    """The module docstring's recipe, written out with hmac and hashlib only."""
    message = b"noseprint/watermark/v1/" + scheme.encode() + b"\x00" + b"".join(t.to_bytes(4, "big") for t in window)
    digest = hmac.new(key.secret, message, hashlib.sha256).digest()
    stream = hashlib.shake_256(digest).digest(8 * vocab)
    return [int.from_bytes(stream[8 * v : 8 * v + 8], "big") for v in range(vocab)]


def test_prf_is_the_documented_recipe_and_fixed():
    u = reference_u64(FIXED_KEY, "kirchenbauer", (5, 7), 40)
    expected_green = sorted(sorted(range(40), key=lambda v: (u[v], v))[:10])
    assert np.flatnonzero(green_mask(FIXED_KEY, (5, 7), 40, 0.25)).tolist() == expected_green
    # pinned: a change of the recipe (or of a library under it) changes every key's watermark
    assert expected_green == [5, 9, 14, 16, 18, 20, 24, 27, 32, 36]
    r_ref = [(x >> 11) / 2**53 for x in reference_u64(FIXED_KEY, "aaronson", (5, 7), 4)]
    assert uniform_r(FIXED_KEY, (5, 7), 4).tolist() == r_ref
    assert r_ref[0] == pytest.approx(0.47617194344056324, abs=0)
    for window in [(5, 7), (0, 0), (302, 1)]:  # the rank test used in scoring is the sort's green list
        mask = green_mask(FIXED_KEY, window, 303, 0.25)
        assert [is_green(FIXED_KEY, window, v, 303, 0.25) for v in range(303)] == mask.tolist()
    # another window, key or scheme gives other values
    assert not np.array_equal(green_mask(FIXED_KEY, (7, 5), 40, 0.25), green_mask(FIXED_KEY, (5, 7), 40, 0.25))
    other = WatermarkKey(bytes(32), bytes(16))
    assert uniform_r(other, (5, 7), 4).tolist() != r_ref


def test_key_file_commitment_and_refusals(tmp_path):
    key = write_key(tmp_path / "wm.key")
    assert stat.S_IMODE((tmp_path / "wm.key").stat().st_mode) == 0o600
    assert key.commitment == hashlib.sha256(b"noseprint/watermark-key/v1" + key.salt + key.secret).hexdigest()
    assert load_key(tmp_path / "wm.key") == key
    with pytest.raises(UsageError, match="already exists"):
        write_key(tmp_path / "wm.key")
    os.chmod(tmp_path / "wm.key", 0o644)
    with pytest.raises(UsageError, match="readable by others"):
        load_key(tmp_path / "wm.key")
    forged = key.to_json() | {"commitment": "00" * 32}
    with pytest.raises(UsageError, match="commitment"):
        key_from_json(forged, "forged")
    with pytest.raises(UsageError, match="32 bytes"):
        key_from_json(key.to_json() | {"key": "abcd"}, "short")


# ----------------------------------------------------------------------------- the statistics


def exact_binomial_tail(s: int, n: int, p: Fraction) -> float:
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(s, n + 1)))


@pytest.mark.parametrize(("s", "n"), [(0, 10), (1, 1), (3, 10), (7, 10), (10, 10), (40, 100), (60, 100)])
def test_binomial_tail_is_exact_on_small_cases(s, n):
    assert 10 ** log10_binomial_tail(s, n, 0.25) == pytest.approx(exact_binomial_tail(s, n, Fraction(1, 4)), rel=1e-9)


def test_binomial_tail_far_below_double_precision():
    # all N green: p = γ^N exactly, far past 1e-308
    assert log10_binomial_tail(5000, 5000, 0.25) == pytest.approx(5000 * math.log10(0.25), rel=1e-12)
    exact = exact_binomial_tail(2900, 4000, Fraction(1, 4))  # 0.0: a double cannot hold it
    assert exact == 0.0
    big = sum(math.comb(4000, i) * 3 ** (4000 - i) for i in range(2900, 4001))
    expected = math.log10(big) - 4000 * math.log10(4)
    assert log10_binomial_tail(2900, 4000, 0.25) == pytest.approx(expected, rel=1e-9)


def test_gamma_tail_closed_forms():
    # N = 1: exp(-S); N = 2: exp(-S)(1 + S); both far past double precision at S = 2000
    assert log10_gamma_tail(2000.0, 1) == pytest.approx(-2000 / math.log(10), rel=1e-12)
    assert log10_gamma_tail(2000.0, 2) == pytest.approx((-2000 + math.log1p(2000)) / math.log(10), rel=1e-12)
    for n, s in [(5, 3.0), (50, 70.0), (400, 380.0)]:
        assert 10 ** log10_gamma_tail(s, n) == pytest.approx(special.gammaincc(n, s), rel=1e-9)
    assert log10_gamma_tail(0.0, 0) == 0.0


def test_p_values_are_uniform_under_the_null():
    """Random token sequences scored with 200 random keys: Aaronson's p uniform (KS), Kirchenbauer's FPR at 0.05
    inside its binomial 99% interval."""
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 50, size=100).tolist()
    text = [Text([], tokens)]
    keys = [new_key() for _ in range(200)]
    aaronson = [10 ** detect(Watermark(k, SchemeParams(AARONSON, 50)), text)["log10_p"] for k in keys]
    assert stats.kstest(aaronson, "uniform").pvalue > 0.01
    kirchenbauer = [10 ** detect(Watermark(k, SchemeParams(KIRCHENBAUER, 50)), text)["log10_p"] for k in keys]
    low, high = stats.binom.interval(0.99, len(keys), 0.05)
    assert sum(p <= 0.05 for p in kirchenbauer) <= high


def test_dedup_scores_each_pair_once_and_repeats_would_fool_the_test():
    """A plain text that repeats one phrase: counted each time, a green pair is 'evidence' 300 times over."""
    wm = Watermark(FIXED_KEY, SchemeParams(KIRCHENBAUER, 50))
    green = lambda a, b, c: bool(wm.values((a, b))[c])  # noqa: E731
    a, b, c = next((a, b, c) for a in range(50) for b in range(50) for c in range(50)
                   if len({a, b, c}) == 3 and green(a, b, c) and green(b, c, a) and green(c, a, b))  # fmt: skip
    text = [Text([a, b], [c, a, b] * 100)]  # three (window, token) pairs, each green, each repeated 100 times
    deduped, repeated = detect(wm, text), detect(wm, text, dedup=False)
    assert deduped["scored"] == 3 and repeated["scored"] == 300
    assert deduped["log10_p"] == pytest.approx(3 * math.log10(0.24))  # γ_eff = ⌊0.25·50⌋/50
    assert repeated["log10_p"] == pytest.approx(300 * math.log10(0.24)) and repeated["log10_p"] < -150
    scorer = Scorer(wm)
    assert scorer.add((a, b), c) and not scorer.add((a, b), c)


# ----------------------------------------------------------------------------- generation and detection


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Teacher (tiny llama), keys, prompts, watermarked texts of both schemes and plain texts."""
    root = tmp_path_factory.mktemp("wm")
    teacher = save_tiny(tiny_llama(seed=0), root / "teacher")
    (root / "prompts.txt").write_text("\n".join(PROMPTS * 3) + "\n")
    keys = {}
    for name in ("key", "other"):
        keys[name] = root / f"{name}.json"
        assert cli("watermark", "keygen", "--out", str(keys[name]), "--json")[0] == 0
    for scheme in (KIRCHENBAUER, AARONSON):
        code, out = cli(
            "watermark", "generate", str(teacher), "--key", str(keys["key"]), "--prompts", str(root / "prompts.txt"),
            "--out", str(root / f"{scheme}.jsonl"), "--scheme", scheme, "--delta", str(BIG_DELTA),
            "--new-tokens", str(NEW_TOKENS), "--json",
        )  # fmt: skip
        assert code == 0, out
    model, tokenizer = gen.load_model(teacher)
    plain = gen.generate_texts(model, tokenizer, PROMPTS * 3, None, NEW_TOKENS, seed=5)
    write_texts(root / "plain.jsonl", plain)
    fresh = gen.generate_texts(model, tokenizer, PROMPTS * 2, Watermark(load_key(keys["key"]), wm_params()), 40, 1.0, 9)
    write_texts(root / "fresh.jsonl", fresh)
    return {"root": root, "teacher": teacher, **keys}


def wm_params() -> SchemeParams:
    return SchemeParams(KIRCHENBAUER, VOCAB, delta=BIG_DELTA)


@pytest.mark.parametrize("scheme", [KIRCHENBAUER, AARONSON])
def test_watermarked_text_is_detected_and_plain_text_is_not(world, scheme):
    texts = str(world["root"] / f"{scheme}.jsonl")
    lines = [json.loads(line) for line in Path(texts).read_text().splitlines()]
    assert lines[0]["watermark"]["scheme"] == scheme and lines[0]["key_commitment"] == load_key(world["key"]).commitment
    assert "key" not in json.dumps(lines[0]["watermark"])
    code, found = cli("watermark", "detect", texts, "--key", str(world["key"]), "--json")
    assert code == 0, found
    assert found["scored"] > 200 and found["log10_p"] < -10  # Aaronson repeats itself on a repeated prompt
    code, wrong_key = cli("watermark", "detect", texts, "--key", str(world["other"]), "--json")
    assert code == 0 and wrong_key["log10_p"] > NOT_FOUND
    code, plain = cli(
        "watermark", "detect", str(world["root"] / "plain.jsonl"), "--key", str(world["key"]), "--scheme", scheme,
        "--vocab-size", str(VOCAB), "--json",
    )  # fmt: skip
    assert code == 0 and plain["scored"] > 300 and plain["log10_p"] > NOT_FOUND
    assert found["curve"][-1] == [found["scored"], found["log10_p"]]
    assert [n for n, _ in found["curve"]] == sorted(n for n, _ in found["curve"])


def test_detect_tokenizes_bare_text_with_a_tokenizer(world, tmp_path):
    lines = [json.loads(line) for line in (world["root"] / "kirchenbauer.jsonl").read_text().splitlines()]
    bare = tmp_path / "bare.jsonl"
    bare.write_text("".join(json.dumps({"text": line["text"]}) + "\n" for line in lines))
    code, message = cli("watermark", "detect", str(bare), "--key", str(world["key"]), "--json")
    assert code == 2 and "--tokenizer" in message
    args = ("watermark", "detect", str(bare), "--key", str(world["key"]), "--tokenizer", str(world["teacher"]))
    code, found = cli(*args, "--json")
    assert code == 0 and found["log10_p"] < -5


def test_bad_input_is_a_usage_error(world, tmp_path):
    key, texts = str(world["key"]), str(world["root"] / "kirchenbauer.jsonl")
    assert cli("watermark", "keygen", "--out", key)[0] == 2  # exists, no --force
    (tmp_path / "broken.jsonl").write_text('{"tokens": [1, 2, 3]}\nnot json\n')
    code, message = cli("watermark", "detect", str(tmp_path / "broken.jsonl"), "--key", key, "--json")
    assert code == 2 and "line 2" in message
    (tmp_path / "outside.jsonl").write_text(json.dumps({"tokens": [1, 2, 99999]}) + "\n")
    code, message = cli("watermark", "detect", str(tmp_path / "outside.jsonl"), "--key", key, "--vocab-size", "303")
    assert code == 2 and "outside the vocabulary" in message
    code, message = cli("watermark", "detect", texts, "--key", key, "--gamma", "1.5")
    assert code == 2 and "γ" in message
    code, message = cli("radioactive", str(world["teacher"]), "--key", key, "--open")
    assert code == 2 and "--texts" in message
    code, message = cli("watermark", "detect", texts, "--key", key, "--report", str(tmp_path / "r.json"))
    assert code == 2 and "--sign" in message
    out = world["root"] / "kirchenbauer.jsonl"
    code, message = cli(
        "watermark", "generate", str(world["teacher"]), "--key", key, "--prompts", str(world["root"] / "prompts.txt"),
        "--out", str(out),
    )  # fmt: skip
    assert code == 2 and "already exists" in message


# ----------------------------------------------------------------------------- radioactivity


def train_student(texts: list[Text], seed: int = 1, steps: int = 80) -> torch.nn.Module:
    """A tiny llama fine-tuned on the texts (prompt and answer), long enough to take on their habits."""
    model = tiny_llama(seed=seed).train()
    width = max(len(t.context) for t in texts)
    rows = torch.tensor([t.context + [t.context[-1]] * (width - len(t.context)) for t in texts])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = rows[torch.randint(len(rows), (8,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def student(world):
    texts = read_texts(world["root"] / "kirchenbauer.jsonl")
    folder = save_tiny(train_student(texts), world["root"] / "student", with_tokenizer=False)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):  # the teacher's vocabulary
        if (world["teacher"] / name).exists():
            shutil.copy(world["teacher"] / name, folder / name)
    return folder


def test_radioactivity_open_mode_finds_the_student_and_not_an_innocent(world, student):
    texts = str(world["root"] / "kirchenbauer.jsonl")
    code, found = cli(
        "radioactive", str(student), "--key", str(world["key"]), "--open", "--texts", texts,
        "--mi-fresh", str(world["root"] / "fresh.jsonl"), "--json",
    )  # fmt: skip
    assert code == 0, found
    assert found["mode"] == "open" and found["scored"] > 200 and found["log10_p"] < -10
    assert found["membership"]["log10_p"] < -2  # the student memorised its training texts
    code, innocent = cli("radioactive", str(world["teacher"]), "--key", str(world["other"]), "--open", "--texts", texts)
    assert code == 0
    innocent_model = gen.load_model(world["teacher"])[0]
    control = reading_mode(innocent_model, Watermark(load_key(world["other"]), wm_params()), read_texts(texts))
    assert control["log10_p"] > NOT_FOUND
    args = ("radioactive", str(student), "--key", str(world["other"]), "--open", "--texts", texts, "--json")
    code, wrong_key = cli(*args)
    assert code == 0 and wrong_key["log10_p"] > NOT_FOUND


def test_reading_mode_skips_windows_repeated_in_a_chunk(world, student):
    model = gen.load_model(student)[0]
    wm = Watermark(load_key(world["key"]), wm_params())
    text = read_texts(world["root"] / "kirchenbauer.jsonl")[0]
    doubled = Text(text.prompt_tokens, text.tokens + text.tokens)
    single, twice = reading_mode(model, wm, [text]), reading_mode(model, wm, [doubled])
    assert twice["skipped_repeated_windows"] >= len(text.tokens) - 2
    assert twice["scored"] <= single["scored"] + 2


def test_radioactivity_closed_mode_with_filters_and_a_transcript(world, student, tmp_path):
    key, texts = str(world["key"]), str(world["root"] / "kirchenbauer.jsonl")
    prompts = str(world["root"] / "prompts.txt")
    args = ("radioactive", str(student), "--key", key, "--closed", "--prompts", prompts, "--new-tokens", "40")
    code, supervised = cli(*args, "--filter", "supervised", "--filter-texts", texts, "--json")
    assert code == 0, supervised
    assert supervised["filter"] == "supervised" and supervised["log10_p"] < -5
    assert supervised["skipped"]["window_not_in_filter"] > 0
    # the same answers as an API's transcript (text only, tokenized with the teacher's tokenizer)
    model, tokenizer = gen.load_model(student)
    answers = gen.generate_texts(model, tokenizer, PROMPTS * 3, None, 40, seed=0)
    transcript = tmp_path / "api.jsonl"
    transcript.write_text("".join(json.dumps({"prompt": a.prompt, "text": a.text}) + "\n" for a in answers))
    args = ("radioactive", str(transcript), "--key", key, "--closed", "--tokenizer", str(world["teacher"]))
    code, via_api = cli(*args, "--filter", "supervised", "--filter-texts", texts, "--json")
    assert code == 0 and via_api["scored"] > 0 and via_api["log10_p"] < -5
    wm, teacher_texts = Watermark(load_key(world["key"]), wm_params()), read_texts(texts)
    unsupervised = closed_mode(wm, answers, unsupervised_filter(teacher_texts, 2, top=50))
    assert unsupervised["filter_size"] == 50 and unsupervised["scored"] < via_api["scored"]
    # an innocent model's answers (the teacher sampling without the watermark) are not flagged
    args = ("radioactive", str(world["root"] / "plain.jsonl"), "--key", key, "--closed", "--filter", "supervised")
    code, innocent = cli(*args, "--filter-texts", texts, "--json")
    assert code == 0 and innocent["log10_p"] > NOT_FOUND


def test_closed_mode_skips_windows_from_the_prompt():
    wm = Watermark(FIXED_KEY, SchemeParams(KIRCHENBAUER, 50))
    answer = Text([1, 2, 3], [1, 2, 3, 4])  # the answer copies the prompt
    result = closed_mode(wm, [answer])
    assert result["skipped"]["window_in_prompt"] == 3 and result["scored"] == 1  # only (3, 1) -> 2
    texts = [Text([9], [1, 2, 3, 1, 2, 3])]  # windows (9,1) (1,2) (2,3) (3,1) (1,2)
    assert supervised_filter(texts, 2) == {(9, 1), (1, 2), (2, 3), (3, 1)}
    assert unsupervised_filter(texts, 2, top=1) == {(1, 2)}


# ----------------------------------------------------------------------------- signed reports and the registry


@pytest.fixture(scope="module")
def owner(world):
    keys = {}
    for name in ("owner", "stranger"):
        keys[name] = world["root"] / name
        assert cli("keygen", "--out", str(keys[name]), "--json")[0] == 0
    return keys


@pytest.fixture(scope="module")
def signed_report(world, student, owner):
    path = world["root"] / "report.json"
    code, out = cli(
        "radioactive", str(student), "--key", str(world["key"]), "--open", "--texts",
        str(world["root"] / "kirchenbauer.jsonl"), "--report", str(path), "--sign", str(owner["owner"]),
        "--curve", str(world["root"] / "curve.json"), "--model-commitment", TEACHER_COMMITMENT.upper(), "--json",
    )  # fmt: skip
    assert code == 0, out
    return path


TEACHER_COMMITMENT = "ab" * 32
"""The registered model the owner's signed report is evidence for (its entry is made in the registry tests)."""


def tampered(path: Path, target: Path, change) -> Path:
    signed = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(signed["envelope"]["payload"]))
    change(statement)
    signed["envelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    target.write_text(json.dumps(signed))
    return target


def test_signed_report_verifies_and_forgeries_are_refused(world, owner, signed_report, tmp_path):
    pub = f"{owner['owner']}.pub"
    code, checked = cli("watermark", "verify-report", str(signed_report), "--pub", pub, "--json")
    assert code == 0 and checked["valid"] and checked["signer_demanded"]
    report = checked["report"]
    assert report["kind"] == "radioactive-open" and report["key_commitment"] == load_key(world["key"]).commitment
    assert set(report["subjects"]) == {"suspect-model", "texts"} and report["result"]["log10_p"] < -10
    assert json.loads((world["root"] / "curve.json").read_text())["scored_vs_log10_p"] == report["result"]["curve"]
    assert load_key(world["key"]).secret.hex() not in signed_report.read_text()

    def lower_p(statement):
        statement["predicate"]["result"]["log10_p"] = -99.0

    forged = tampered(signed_report, tmp_path / "forged.json", lower_p)
    code, refused = cli("watermark", "verify-report", str(forged), "--json")
    assert code == 1 and not refused["valid"] and "no signature" in refused["reason"]
    code, refused = cli("watermark", "verify-report", str(signed_report), "--pub", f"{owner['stranger']}.pub", "--json")
    assert code == 1
    # revealing the key: the right one opens the commitment, another does not
    code, opened = cli("watermark", "verify-report", str(signed_report), "--reveal", str(world["key"]), "--json")
    assert code == 0 and opened["key_opens_commitment"]
    code, refused = cli("watermark", "verify-report", str(signed_report), "--reveal", str(world["other"]), "--json")
    assert code == 1 and "commitment" in refused["reason"]


def test_revealed_key_recomputes_a_detect_report(world, owner, tmp_path):
    texts, report = world["root"] / "aaronson.jsonl", tmp_path / "detect-report.json"
    args = ("watermark", "detect", str(texts), "--key", str(world["key"]), "--report", str(report))
    assert cli(*args, "--sign", str(owner["owner"]), "--json")[0] == 0
    check = ("watermark", "verify-report", str(report), "--reveal", str(world["key"]))
    code, recomputed = cli(*check, "--texts", str(texts), "--json")
    assert code == 0 and recomputed["recomputed"]["scored"] == recomputed["report"]["result"]["scored"]
    other_texts = tmp_path / "other.jsonl"
    other_texts.write_text(texts.read_text().replace('"tokens": [', '"tokens": [1, ', 1))
    code, refused = cli(*check, "--texts", str(other_texts), "--json")
    assert code == 1 and "SHA-256" in refused["reason"]


def resigned(path: Path, target: Path, change, owner_key: Path) -> Path:
    """The owner (or anyone holding the signing key) signs a changed report: the signature is valid, the figures
    are not; only recomputing from the revealed key and the record can tell."""
    from noseprint.signing.keys import load_private
    from noseprint.watermark.report import sign_report, verify_signed, write_signed

    body = verify_signed(path.read_bytes())[1]
    change(body)
    write_signed(target, sign_report(body, load_private(owner_key)), force=True)
    return target


def test_revealed_key_recomputes_radioactivity_reports(world, owner, student, signed_report, tmp_path):
    texts, pub = world["root"] / "kirchenbauer.jsonl", f"{owner['owner']}.pub"
    check = ("watermark", "verify-report", "--pub", pub, "--reveal", str(world["key"]), "--json")
    # open mode: the suspect's recorded predictions over the named texts give the signed score back
    code, opened = cli(*check, str(signed_report), "--texts", str(texts))
    assert code == 0, opened
    stated = opened["report"]["result"]
    assert opened["recomputed"]["scored"] == stated["scored"] and opened["recomputed"]["log10_p"] < -10
    assert len(opened["report"]["record"]["predictions"]) == len(read_texts(texts))

    def inflate(body):
        body["result"]["score"] += 25

    def flip_predictions(body):  # claim the suspect chose its window's green token at 40 positions
        wm = Watermark(load_key(world["key"]), wm_params())
        text, guesses = read_texts(texts)[0], body["record"]["predictions"][0]
        for t in range(len(text.prompt_tokens), min(len(text.context), len(text.prompt_tokens) + 40)):
            guesses[t - 1] = int(np.flatnonzero(wm.values(tuple(text.context[t - 2 : t])))[0])

    for change in (inflate, flip_predictions):
        forged = resigned(signed_report, tmp_path / f"{change.__name__}.json", change, owner["owner"])
        assert cli("watermark", "verify-report", str(forged), "--pub", pub, "--json")[0] == 0  # the signature holds
        code, refused = cli(*check, str(forged), "--texts", str(texts))
        assert code == 1 and "recomputed score" in refused["reason"], refused
    code, refused = cli(*check, str(signed_report), "--texts", str(world["root"] / "fresh.jsonl"))
    assert code == 1 and "SHA-256" in refused["reason"]
    # closed mode, supervised filter: the recorded answers and the filter's texts give the signed score back
    report = tmp_path / "closed-report.json"
    args = ("radioactive", str(student), "--key", str(world["key"]), "--closed", "--prompts")
    code, found = cli(
        *args, str(world["root"] / "prompts.txt"), "--new-tokens", "40", "--filter", "supervised",
        "--filter-texts", str(texts), "--report", str(report), "--sign", str(owner["owner"]), "--json",
    )  # fmt: skip
    assert code == 0, found
    code, closed = cli(*check, str(report), "--texts", str(texts))
    assert code == 0 and closed["recomputed"]["scored"] == found["scored"] == closed["report"]["result"]["scored"]
    assert found["scored"] > NEW_TOKENS  # more than one answer's worth
    code, needs = cli(*check, str(report))
    assert code == 0 and "recomputed" not in needs  # no filter texts given: the key is checked, nothing recomputed

    def edit_answer(body):  # keep only the first answer: it alone cannot hold the signed count of scored pairs
        body["record"]["answers"] = body["record"]["answers"][:1]

    forged = resigned(report, tmp_path / "closed-forged.json", edit_answer, owner["owner"])
    code, refused = cli(*check, str(forged), "--texts", str(texts))
    assert code == 1 and "recomputed score" in refused["reason"], refused


def test_registry_takes_a_report_as_evidence_from_the_owner_only(world, owner, signed_report, tmp_path):
    pytest.importorskip("sqlalchemy")
    from noseprint.registry.service import Rejected, Verified, add_evidence, append, list_evidence, open_registry
    from noseprint.signing.keys import key_id, load_private

    db = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    registry = open_registry(db, tmp_path / "registry-key", writable=True)
    owner_id = key_id(load_private(owner["owner"]).public_key())
    registered = Verified(  # a registered model's row (proving is tested elsewhere; here only evidence is new)
        {"commitment": {"digest": TEACHER_COMMITMENT}, "model": {"model_type": "llama"}}, b"{}", b"{}", owner_id,
        np.zeros(128, dtype="<f4"), b"png", b"tar",
    )  # fmt: skip
    entry_id, _, _ = append(registry, registered, "teacher")
    code, attached = cli("registry", "evidence", str(entry_id), str(signed_report), "--db", db, "--json")
    assert code == 0, attached
    assert attached["kind"] == "radioactive-open" and attached["log10_p"] < -10
    assert [e["evidence_id"] for e in list_evidence(registry, entry_id)] == [attached["evidence_id"]]
    code, shown = cli("registry", "show", str(entry_id), "--db", db, "--json")
    assert code == 0 and shown["evidence"][0]["key_commitment"] == load_key(world["key"]).commitment
    assert shown["evidence"][0]["model_commitment"] == TEACHER_COMMITMENT
    code, again = cli("registry", "evidence", str(entry_id), str(signed_report), "--db", db)
    assert code == 1 and "attached already" in again

    def lower_p(statement):
        statement["predicate"]["result"]["log10_p"] = -99.0

    with pytest.raises(Rejected, match="does not verify"):
        add_evidence(registry, entry_id, tampered(signed_report, tmp_path / "forged.json", lower_p).read_bytes())
    stranger_report = tmp_path / "stranger.json"
    code, _ = cli(
        "watermark", "detect", str(world["root"] / "kirchenbauer.jsonl"), "--key", str(world["key"]), "--report",
        str(stranger_report), "--sign", str(owner["stranger"]), "--json",
    )  # fmt: skip
    assert code == 0
    with pytest.raises(Rejected, match="not by entry"):
        add_evidence(registry, entry_id, stranger_report.read_bytes())
    assert len(list_evidence(registry, entry_id)) == 1


def test_a_report_is_evidence_for_the_entry_it_names_only(world, owner, signed_report, tmp_path):
    """Issue 33 (7): a report is signed by its owner, who may have several entries; were it bound to the signer
    alone, whoever attached it first would pick the entry. It names the model commitment it speaks for (report
    version 2): attached to another entry of the same owner it is refused, as is one that names none."""
    pytest.importorskip("sqlalchemy")
    from noseprint.registry.service import Rejected, Verified, add_evidence, append, list_evidence, open_registry
    from noseprint.signing.keys import key_id, load_private

    registry = open_registry(f"sqlite:///{tmp_path / 'registry.sqlite3'}", tmp_path / "registry-key", writable=True)
    owner_id = key_id(load_private(owner["owner"]).public_key())
    entries = {}
    for commitment, label in ((TEACHER_COMMITMENT, "teacher"), ("cd" * 32, "another model of the same owner")):
        row = Verified(
            {"commitment": {"digest": commitment}, "model": {}}, b"{}", b"{}", owner_id, np.zeros(128, "<f4"),
            b"png", b"tar",
        )  # fmt: skip
        entries[label] = append(registry, row, label)[0]
    code, checked = cli("watermark", "verify-report", str(signed_report), "--json")
    assert code == 0 and checked["report"]["version"] == 2
    assert checked["report"]["model_commitment"] == TEACHER_COMMITMENT
    with pytest.raises(Rejected, match="not entry"):
        add_evidence(registry, entries["another model of the same owner"], signed_report.read_bytes())
    unnamed = tmp_path / "unnamed.json"
    code, _ = cli(
        "watermark", "detect", str(world["root"] / "kirchenbauer.jsonl"), "--key", str(world["key"]), "--report",
        str(unnamed), "--sign", str(owner["owner"]), "--json",
    )  # fmt: skip
    assert code == 0
    with pytest.raises(Rejected, match="names no registered model"):
        add_evidence(registry, entries["teacher"], unnamed.read_bytes())
    assert add_evidence(registry, entries["teacher"], signed_report.read_bytes())["model_commitment"] == (
        TEACHER_COMMITMENT
    )
    assert [len(list_evidence(registry, entry)) for entry in entries.values()] == [1, 0]
    code, message = cli("watermark", "detect", "x.jsonl", "--key", "k", "--model-commitment", "ab" * 32)
    assert code == 2 and "--report" in message


def test_bench_mix_has_the_watermarked_share():
    from bench.radioactivity import mix

    watermarked = [Text([0], [1, i]) for i in range(100)]
    plain = [Text([0], [2, i]) for i in range(100)]
    for rho, count in [(0.0, 0), (0.05, 5), (1.0, 100)]:
        training, marked = mix(watermarked, plain, rho, np.random.default_rng(0))
        assert len(training) == 100 and len(marked) == count
        assert sum(t.tokens[0] == 1 for t in training) == count
        assert sorted(t.tokens[1] for t in training) == list(range(100))  # each prompt once, in one version
